/*
 * Build glue, not library code: force-included (-include) only by the
 * device-code check of backends/hip/CMakeLists.txt when a clang newer than
 * 19 compiles against Debian's HIP 5.2 headers (/usr/include/hip).  Those
 * headers were written for clang 15: they read __AMDGCN_WAVEFRONT_SIZE
 * (which clang 20+ no longer defines; the build passes it per target) and
 * call __llvm_amdgcn_rcp_f16 / _2f16, which clang 19's wrapper headers declared and
 * clang 22's do not.  They are declared here and nothing defines it: the
 * library never calls hrcp / h2rcp, and a call would fail to link.
 */
#ifndef BSA_HIP_COMPAT_DEBIAN_HIP52_CLANG20_H
#define BSA_HIP_COMPAT_DEBIAN_HIP52_CLANG20_H
#if defined(__HIP__) && defined(__clang_major__) && __clang_major__ >= 20
typedef _Float16 bsa_compat_2f16 __attribute__((ext_vector_type(2)));
extern "C" __attribute__((device, const)) _Float16 __llvm_amdgcn_rcp_f16(_Float16);
extern "C" __attribute__((device, const)) bsa_compat_2f16 __llvm_amdgcn_rcp_2f16(bsa_compat_2f16);
#endif
#endif
