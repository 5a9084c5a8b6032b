/* Status strings and the thread-local detail message behind bsa_last_error(). */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_error[512];

static const char *const status_names[] = {
    [BSA_SUCCESS] = "BSA_SUCCESS",
    [BSA_ERROR_NULL_POINTER] = "BSA_ERROR_NULL_POINTER",
    [BSA_ERROR_INVALID_ARGUMENT] = "BSA_ERROR_INVALID_ARGUMENT",
    [BSA_ERROR_INVALID_SHAPE] = "BSA_ERROR_INVALID_SHAPE",
    [BSA_ERROR_SHAPE_MISMATCH] = "BSA_ERROR_SHAPE_MISMATCH",
    [BSA_ERROR_UNSUPPORTED] = "BSA_ERROR_UNSUPPORTED",
    [BSA_ERROR_INVALID_DTYPE] = "BSA_ERROR_INVALID_DTYPE",
    [BSA_ERROR_OVERFLOW] = "BSA_ERROR_OVERFLOW",
    [BSA_ERROR_OUT_OF_MEMORY] = "BSA_ERROR_OUT_OF_MEMORY",
    [BSA_ERROR_BACKEND_UNAVAILABLE] = "BSA_ERROR_BACKEND_UNAVAILABLE",
    [BSA_ERROR_NO_DEVICE] = "BSA_ERROR_NO_DEVICE",
    [BSA_ERROR_DEVICE] = "BSA_ERROR_DEVICE",
    [BSA_ERROR_WORKSPACE] = "BSA_ERROR_WORKSPACE",
    [BSA_ERROR_CONTEXT_MISMATCH] = "BSA_ERROR_CONTEXT_MISMATCH",
    [BSA_ERROR_CALLBACK] = "BSA_ERROR_CALLBACK",
    [BSA_ERROR_INTERNAL] = "BSA_ERROR_INTERNAL",
};

BSA_API const char *bsa_status_string(bsa_status status)
{
    unsigned i = (unsigned)status;
    if (i < sizeof status_names / sizeof status_names[0] && status_names[i])
        return status_names[i];
    return "BSA_ERROR_UNKNOWN_STATUS";
}

BSA_API const char *bsa_last_error(void)
{
    return last_error;
}

void bsa_clear_error(void)
{
    last_error[0] = '\0';
}

bsa_status bsa_fail(bsa_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

bsa_status bsa_check_nonnull2(const char *fn, const void *a, const char *a_name, const void *b,
                              const char *b_name)
{
    if (!a || !b)
        return bsa_fail(BSA_ERROR_NULL_POINTER, "%s: %s is NULL", fn, !a ? a_name : b_name);
    return BSA_SUCCESS;
}

int bsa_mul_ok(int64_t a, int64_t b, int64_t *out)
{
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r))
        return 0;
    *out = r;
    return 1;
}

BSA_API void bsa_version(int *major, int *minor, int *patch)
{
    if (major)
        *major = BSA_VERSION_MAJOR;
    if (minor)
        *minor = BSA_VERSION_MINOR;
    if (patch)
        *patch = BSA_VERSION_PATCH;
}
