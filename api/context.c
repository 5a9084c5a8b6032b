/* Contexts and backend dispatch: AUTO takes the first compiled backend that
 * finds a device (GPU before CPU); BSA_BACKEND=cpu|cuda|hip overrides AUTO. */
#include "internal.h"
#include "../backends/backend.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Best first: AUTO walks this list. */
static const bsa_backend_i *const backends[] = {
#ifdef BSA_WITH_CUDA
    &bsa_backend_cuda,
#endif
#ifdef BSA_WITH_HIP
    &bsa_backend_hip,
#endif
    &bsa_backend_cpu,
};
enum { n_backends = sizeof backends / sizeof backends[0] };

static const char *const backend_names[] = {"auto", "cpu", "cuda", "hip"};

BSA_API const char *bsa_backend_name(bsa_backend backend)
{
    unsigned i = (unsigned)backend;
    return i < 4 ? backend_names[i] : "unknown";
}

static const bsa_backend_i *find_backend(bsa_backend kind)
{
    for (int i = 0; i < n_backends; i++)
        if (backends[i]->kind == kind)
            return backends[i];
    return NULL;
}

BSA_API int bsa_backend_compiled(bsa_backend backend)
{
    return backend == BSA_BACKEND_AUTO || find_backend(backend) != NULL;
}

/* Reads BSA_BACKEND; returns 0 and sets *kind when it names a backend. */
static bsa_status env_backend(bsa_backend *kind)
{
    const char *env = getenv("BSA_BACKEND");
    if (!env || !*env || !strcasecmp(env, "auto"))
        return BSA_SUCCESS;
    for (int i = 1; i < 4; i++) {
        if (!strcasecmp(env, backend_names[i])) {
            *kind = (bsa_backend)i;
            return BSA_SUCCESS;
        }
    }
    return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                    "environment BSA_BACKEND='%s' is not one of auto, cpu, cuda, hip", env);
}

BSA_API bsa_status bsa_context_create(bsa_context_t *ctx, const bsa_context_params *params)
{
    if (!ctx)
        return bsa_fail(BSA_ERROR_NULL_POINTER, "bsa_context_create: ctx is NULL");
    bsa_context_params p = {BSA_BACKEND_AUTO, 0, 0};
    if (params)
        p = *params;
    if ((unsigned)p.backend > BSA_BACKEND_HIP)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "bsa_context_create: params->backend = %d is not a bsa_backend value",
                        (int)p.backend);
    if (p.device < 0)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "bsa_context_create: params->device = %d must be >= 0", p.device);
    if (p.num_threads < 0)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "bsa_context_create: params->num_threads = %d must be >= 0 (0 = default)",
                        p.num_threads);
    bsa_status st;
    if (p.backend == BSA_BACKEND_AUTO && (st = env_backend(&p.backend)) != BSA_SUCCESS)
        return st;

    const bsa_backend_i *impl = NULL;
    if (p.backend == BSA_BACKEND_AUTO) {
        for (int i = 0; i < n_backends && !impl; i++)
            if (backends[i]->probe(p.device) == BSA_SUCCESS)
                impl = backends[i];
        if (!impl)
            return bsa_fail(BSA_ERROR_INTERNAL, "bsa_context_create: no backend accepted device %d",
                            p.device);
    } else {
        impl = find_backend(p.backend);
        if (!impl)
            return bsa_fail(BSA_ERROR_BACKEND_UNAVAILABLE,
                            "bsa_context_create: backend '%s' is not compiled into this build",
                            bsa_backend_name(p.backend));
        if ((st = impl->probe(p.device)) != BSA_SUCCESS)
            return st; /* the probe wrote the reason */
    }

    struct bsa_context *c = calloc(1, sizeof *c);
    if (!c)
        return bsa_fail(BSA_ERROR_OUT_OF_MEMORY, "bsa_context_create: out of host memory");
    c->backend = impl->kind;
    c->device = p.device;
    c->num_threads = p.num_threads;
    c->impl = impl;
    if (impl->context_init && (st = impl->context_init(c)) != BSA_SUCCESS) {
        free(c);
        return st;
    }
    *ctx = c;
    return BSA_SUCCESS;
}

BSA_API bsa_status bsa_context_destroy(bsa_context_t ctx)
{
    if (!ctx)
        return BSA_SUCCESS; /* like free(NULL) */
    int layouts = bsa_live_get(&ctx->live_layouts), plans = bsa_live_get(&ctx->live_plans);
    if (layouts > 0 || plans > 0)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "bsa_context_destroy: %d layout(s) and %d plan(s) still use the context; "
                        "destroy them first",
                        layouts, plans);
    if (ctx->impl->context_fini)
        ctx->impl->context_fini(ctx);
    free(ctx);
    return BSA_SUCCESS;
}

BSA_API bsa_status bsa_context_backend(bsa_context_t ctx, bsa_backend *backend)
{
    bsa_status st = bsa_check_nonnull2("bsa_context_backend", ctx, "ctx", backend, "backend");
    if (st != BSA_SUCCESS)
        return st;
    *backend = ctx->backend;
    return BSA_SUCCESS;
}
