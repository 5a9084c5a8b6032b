# CUDA backend.  BSA_WITH_CUDA:
#   ON    build it (fails without a CUDA compiler);
#   OFF   never;
#   AUTO  (default) only where a CUDA compiler works AND a CUDA device with
#         its driver is present (`nvidia-smi -L` lists a GPU).  Compiling the
#         kernels takes minutes, which a machine without a GPU would spend
#         for nothing; CI compiles the backend on its own
#         (scripts/ci-cuda-compile.sh), and ON builds it anywhere.
set(BSA_HAVE_CUDA OFF)
string(TOUPPER "${BSA_WITH_CUDA}" _bsa_cuda)
if(_bsa_cuda MATCHES "^(1|TRUE|YES|Y)$")
  set(_bsa_cuda ON)
elseif(_bsa_cuda MATCHES "^(0|FALSE|NO|N)$")
  set(_bsa_cuda OFF)
endif()
if(NOT _bsa_cuda MATCHES "^(ON|OFF|AUTO)$")
  message(FATAL_ERROR "BSA_WITH_CUDA must be ON, OFF or AUTO, got '${BSA_WITH_CUDA}'")
endif()
set(_bsa_cuda_why "BSA_WITH_CUDA=OFF")

# Sets ${out} to TRUE when nvidia-smi lists at least one GPU.
function(bsa_cuda_device_present out)
  set(${out} FALSE PARENT_SCOPE)
  find_program(BSA_NVIDIA_SMI nvidia-smi)
  if(NOT BSA_NVIDIA_SMI)
    return()
  endif()
  execute_process(COMMAND ${BSA_NVIDIA_SMI} -L RESULT_VARIABLE rc OUTPUT_VARIABLE listed
    ERROR_QUIET TIMEOUT 30)
  if(rc EQUAL 0 AND listed MATCHES "GPU [0-9]+")
    set(${out} TRUE PARENT_SCOPE)
  endif()
endfunction()

if(NOT _bsa_cuda STREQUAL "OFF" AND EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/backends/cuda/CMakeLists.txt)
  set(_bsa_device TRUE)
  if(_bsa_cuda STREQUAL "AUTO")
    bsa_cuda_device_present(_bsa_device)
  endif()
  if(NOT _bsa_device)
    set(_bsa_cuda_why "no CUDA device (`nvidia-smi -L` lists none)")
    if(CMAKE_CUDA_COMPILER) # the Makefile passes where nvcc is; read here, so not "unused"
      string(APPEND _bsa_cuda_why ", though nvcc is at ${CMAKE_CUDA_COMPILER}")
    endif()
    string(APPEND _bsa_cuda_why ": -DBSA_WITH_CUDA=ON (`make BSA_WITH_CUDA=ON`) builds it anyway")
  else()
    include(CheckLanguage)
    check_language(CUDA)
    if(CMAKE_CUDA_COMPILER)
      set(BSA_HAVE_CUDA ON)
    elseif(_bsa_cuda STREQUAL "ON")
      message(FATAL_ERROR "BSA_WITH_CUDA=ON but no CUDA compiler was found \
(set CMAKE_CUDA_COMPILER=/path/to/nvcc)")
    else()
      set(_bsa_cuda_why "a CUDA device, but no CUDA compiler (set CMAKE_CUDA_COMPILER)")
    endif()
  endif()
endif()
if(BSA_HAVE_CUDA)
  if(BSA_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES ${BSA_CUDA_ARCHITECTURES})
  endif()
  enable_language(CUDA)
  # Without BSA_CUDA_ARCHITECTURES: native code for the cards the toolkit
  # can compile for, and PTX of each for newer ones.  sm_80 code runs on
  # every sm_8x (A100, A10, L4, L40, RTX 30xx/40xx), sm_90 on H100/H200
  # (and builds the sm_90a wgmma kernels), sm_100 on B200/GB200/B300, sm_120
  # on RTX 50xx / RTX PRO 6000 / DGX Spark: a card without its own code
  # compiles the PTX at load (minutes, once per driver cache).  CUDA 12.8
  # is the first to know sm_100 / sm_120; CUDA 11 has no sm_90a, but sm_70
  # (V100), which CUDA 13 dropped.
  if(NOT BSA_CUDA_ARCHITECTURES)
    if(CMAKE_CUDA_COMPILER_VERSION VERSION_GREATER_EQUAL 12.8)
      set(BSA_CUDA_ARCHITECTURES "80;90;100;120")
    elseif(CMAKE_CUDA_COMPILER_VERSION VERSION_GREATER_EQUAL 12.0)
      set(BSA_CUDA_ARCHITECTURES "80;90")
    else()
      set(BSA_CUDA_ARCHITECTURES "70;80")
    endif()
    set(CMAKE_CUDA_ARCHITECTURES ${BSA_CUDA_ARCHITECTURES})
  endif()
  add_subdirectory(backends/cuda)
  message(STATUS "bsa: CUDA backend ON (${BSA_WITH_CUDA}): CUDA ${CMAKE_CUDA_COMPILER_VERSION}, \
architectures ${BSA_CUDA_ARCHITECTURES}; compiling its kernels takes minutes")
else()
  message(STATUS "bsa: CUDA backend OFF: ${_bsa_cuda_why}")
endif()
