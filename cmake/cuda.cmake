# CUDA backend: built when BSA_WITH_CUDA is ON, or AUTO and nvcc works.
set(BSA_HAVE_CUDA OFF)
if(NOT BSA_WITH_CUDA STREQUAL "OFF" AND EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/backends/cuda/CMakeLists.txt)
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(BSA_HAVE_CUDA ON)
  elseif(BSA_WITH_CUDA STREQUAL "ON")
    message(FATAL_ERROR "BSA_WITH_CUDA=ON but no CUDA compiler was found")
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
  message(STATUS "bsa: CUDA ${CMAKE_CUDA_COMPILER_VERSION}, architectures ${BSA_CUDA_ARCHITECTURES}")
endif()
message(STATUS "bsa: CUDA backend ${BSA_HAVE_CUDA}")
