# HIP backend: built when BSA_WITH_HIP is ON, or AUTO and hipcc works.  Its
# choices are the GPU implementation list's (backends/gpu/dispatch.c, built
# in every configuration).
set(BSA_HIP_ARCHITECTURES "gfx90a;gfx940;gfx1030" CACHE STRING
  "AMD targets of the HIP backend (MFMA on gfx90a/gfx940, scalar tile elsewhere)")
set(BSA_HAVE_HIP OFF)
if(NOT BSA_WITH_HIP STREQUAL "OFF" AND EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/backends/hip/CMakeLists.txt)
  find_program(BSA_HIPCC hipcc)
  find_library(BSA_AMDHIP64 amdhip64)
  if(BSA_HAVE_CUDA)
    # Both would define the shared kernels' symbols (one source, two vendors).
    set(_why "the CUDA backend is built (one library holds one of CUDA, HIP: BSA_WITH_CUDA=OFF)")
  elseif(NOT BSA_HIPCC OR NOT BSA_AMDHIP64)
    set(_why "hipcc or libamdhip64 not found (Debian: hipcc libamdhip64-dev)")
  else()
    set(BSA_HAVE_HIP ON)
    add_subdirectory(backends/hip)
  endif()
  if(NOT BSA_HAVE_HIP AND BSA_WITH_HIP STREQUAL "ON")
    message(FATAL_ERROR "BSA_WITH_HIP=ON but ${_why}")
  endif()
endif()
message(STATUS "bsa: HIP backend ${BSA_HAVE_HIP}")
