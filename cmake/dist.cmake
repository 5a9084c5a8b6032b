# Context parallelism (dist/; issue 27): the communicator engines.
#   BSA_WITH_MPI  OFF (default), ON (MPI required) or AUTO (if found): the
#                 MPI engine for CPU ranks; libbsa then links the MPI library.
#   BSA_WITH_NCCL OFF (default) or ON: the NCCL communicator for dist plans
#                 on CUDA contexts (needs the CUDA backend).  nccl.h and
#                 libnccl are looked up under BSA_NCCL_ROOT, then the
#                 nvidia-nccl-cu13 wheel of the python3 on the PATH
#                 (site-packages/nvidia/nccl), then the system.
# dist/comm.c, the callbacks engine (the caller's own transport) and the
# dist plan are always built: without MPI or NCCL, bsa_comm_create_mpi /
# _nccl return BSA_ERROR_BACKEND_UNAVAILABLE.
set(BSA_WITH_MPI "OFF" CACHE STRING "Build the MPI engine of dist plans: ON, OFF or AUTO")
set(BSA_WITH_NCCL "OFF" CACHE STRING "Build the NCCL communicator (needs BSA_WITH_CUDA): ON or OFF")
set(BSA_NCCL_ROOT "" CACHE PATH "Prefix holding include/nccl.h and lib/libnccl.so*")

# dist/dist_ops.c holds the host table of per-step operations and, in a
# CUDA build, the device table over backends/cuda/dist_kernels.cu (which
# backends/cuda/CMakeLists.txt compiles with the backend's other kernels).
target_sources(bsa_obj PRIVATE dist/comm.c dist/comm_callbacks.c dist/dist_plan.c dist/dist_exec.c
  dist/dist_ops.c)
set(BSA_HAVE_MPI OFF)
if(BSA_WITH_MPI)
  if(BSA_WITH_MPI STREQUAL "AUTO")
    find_package(MPI COMPONENTS C QUIET)
  else()
    find_package(MPI COMPONENTS C REQUIRED)
  endif()
  if(MPI_C_FOUND)
    set(BSA_HAVE_MPI ON)
    target_sources(bsa_obj PRIVATE dist/comm_mpi.c)
    target_compile_definitions(bsa_obj PRIVATE BSA_HAVE_MPI=1)
    target_link_libraries(bsa_obj PUBLIC MPI::MPI_C)
    message(STATUS "bsa: dist plans over MPI (MPI ${MPI_C_VERSION}: ${MPI_C_LIBRARIES})")
  else()
    message(STATUS "bsa: MPI not found: dist plans without the MPI engine")
  endif()
endif()

set(BSA_HAVE_NCCL OFF)
if(BSA_WITH_NCCL)
  if(NOT BSA_HAVE_CUDA)
    message(FATAL_ERROR "BSA_WITH_NCCL=ON needs the CUDA backend (BSA_WITH_CUDA=ON)")
  endif()
  set(_bsa_nccl_hints "")
  if(BSA_NCCL_ROOT)
    list(APPEND _bsa_nccl_hints ${BSA_NCCL_ROOT})
  endif()
  find_package(Python3 COMPONENTS Interpreter QUIET)
  if(Python3_Interpreter_FOUND)
    execute_process(COMMAND ${Python3_EXECUTABLE} -c
      "import nvidia.nccl as m; print(list(m.__path__)[0])"
      OUTPUT_VARIABLE _bsa_nccl_py OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    if(_bsa_nccl_py)
      list(APPEND _bsa_nccl_hints ${_bsa_nccl_py})
    endif()
  endif()
  # BSA_NCCL_ROOT, when given, is the only place looked at (a machine may
  # have another NCCL under /usr/local)
  set(_bsa_nccl_only "")
  if(BSA_NCCL_ROOT)
    set(_bsa_nccl_only NO_DEFAULT_PATH)
  endif()
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${_bsa_nccl_hints} PATH_SUFFIXES include
    ${_bsa_nccl_only})
  # the wheel ships libnccl.so.2 only (no development symlink)
  find_library(NCCL_LIBRARY NAMES nccl libnccl.so.2 NAMES_PER_DIR HINTS ${_bsa_nccl_hints}
    PATH_SUFFIXES lib lib64 ${_bsa_nccl_only})
  if(NOT NCCL_INCLUDE_DIR OR NOT NCCL_LIBRARY)
    message(FATAL_ERROR "BSA_WITH_NCCL=ON but nccl.h / libnccl were not found: \
pip install nvidia-nccl-cu13, or set BSA_NCCL_ROOT")
  endif()
  set(BSA_HAVE_NCCL ON)
  find_package(CUDAToolkit REQUIRED)
  target_sources(bsa_obj PRIVATE dist/comm_nccl.c)
  set_source_files_properties(dist/comm_nccl.c PROPERTIES INCLUDE_DIRECTORIES "${NCCL_INCLUDE_DIR}")
  target_compile_definitions(bsa_obj PRIVATE BSA_HAVE_NCCL=1)
  target_link_libraries(bsa_obj PUBLIC ${NCCL_LIBRARY} CUDA::cudart_static)
  message(STATUS "bsa: NCCL communicator compiled (${NCCL_INCLUDE_DIR}/nccl.h, ${NCCL_LIBRARY}): dist plans \
on CUDA contexts over NCCL")
endif()
