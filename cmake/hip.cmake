# HIP backend: built when BSA_WITH_HIP is ON, or AUTO and hipcc works.
set(BSA_HAVE_HIP OFF)
if(NOT BSA_WITH_HIP STREQUAL "OFF" AND EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/backends/hip/CMakeLists.txt)
  add_subdirectory(backends/hip)
endif()
message(STATUS "bsa: HIP backend ${BSA_HAVE_HIP}")
