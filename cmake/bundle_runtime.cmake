# Install script (BSA_BUNDLE_RUNTIME): copies the shared libraries that
# libbsa (BSA_LIB) needs, except the system's own, into BSA_DEST beside it,
# under the names the loader asks for (their sonames), and sets each copy's
# RUNPATH to $ORIGIN with patchelf (BSA_PATCHELF) so that the copies find
# each other (oneDNN needs the OpenMP runtime and the OpenCL loader).
# libbsa's own RUNPATH is $ORIGIN (CMakeLists.txt).
#
# "The system's own" is the manylinux policy's list: glibc's libraries, the
# loader, libstdc++ and libgcc_s, which every Linux that runs Python has.
cmake_minimum_required(VERSION 3.21)
file(GET_RUNTIME_DEPENDENCIES LIBRARIES "${BSA_LIB}"
  RESOLVED_DEPENDENCIES_VAR deps UNRESOLVED_DEPENDENCIES_VAR missing
  PRE_EXCLUDE_REGEXES
    "^linux-vdso" "^ld-linux" "^libc\\.so" "^libm\\.so" "^libdl\\.so" "^librt\\.so"
    "^libpthread\\.so" "^libutil\\.so" "^libresolv\\.so" "^libnsl\\.so" "^libcrypt\\.so"
    "^libstdc\\+\\+\\.so" "^libgcc_s\\.so"
  POST_EXCLUDE_REGEXES "libbsa\\.so")
if(missing)
  message(FATAL_ERROR "bsa: cannot bundle the runtime: libbsa needs ${missing}, not found")
endif()
foreach(dep IN LISTS deps)
  get_filename_component(name "${dep}" NAME)
  get_filename_component(real "${dep}" REALPATH)
  message(STATUS "Bundling: ${BSA_DEST}/${name} (from ${real})")
  file(COPY_FILE "${real}" "${BSA_DEST}/${name}")
  execute_process(COMMAND "${BSA_PATCHELF}" --set-rpath "$ORIGIN" "${BSA_DEST}/${name}"
    RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "bsa: patchelf --set-rpath failed on ${BSA_DEST}/${name}")
  endif()
endforeach()
