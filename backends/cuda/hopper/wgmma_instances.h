/*
 * The Hopper kernels' instances, one translation unit per family
 * (wgmma_fwd.cu, wgmma_dq.cu, wgmma_dkdv.cu) so that a build compiles them
 * in parallel; wgmma_launch.cu picks among them.  Each family is compiled
 * for f16 and bf16, padded head dims 64 and 128, with and without the
 * features' code (feat: key lengths, packed sequences or kv groups in the
 * call) and for natural and gathered key tiles (gather).
 */
#ifndef BSA_CUDA_HOPPER_WGMMA_INSTANCES_H
#define BSA_CUDA_HOPPER_WGMMA_INSTANCES_H

#include "../cuda_internal.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <type_traits>

namespace bsa_cuda
{
namespace hopper
{

/* the kernels (as launch handles); null for a shape without one */
const void *fwd_kernel_of(int nwg, bsa_dtype dt, int dpad, bool feat, bool gather);
const void *dq_kernel_of(bsa_dtype dt, int dpad, bool feat, bool gather);
const void *dkdv_kernel_of(bsa_dtype dt, int dpad, bool feat, bool gather);
/* the warp-specialised forward (head dims 64 and 128, no key lengths or
 * packed sequences, natural key tiles; its parameters add the K and V
 * tensor maps); pred: for layouts whose mixed pairs are all predicate
 * tiles (bsa_cuda_params::pred_tiles) */
const void *fwd_ws_kernel_of(bsa_dtype dt, int dpad, bool pred);

template <typename T> struct type_tag {
    using type = T;
};
template <int D> struct dim_tag {
    static constexpr int value = D;
};

/* f(type_tag<element type>, dim_tag<padded head dim>) for a call's dtype
 * and head dim; null where no instance exists */
template <typename F> const void *by_shape(bsa_dtype dt, int dpad, F &&f)
{
    if (dt == BSA_DTYPE_F16)
        return dpad == 64    ? f(type_tag<__half>(), dim_tag<64>())
               : dpad == 128 ? f(type_tag<__half>(), dim_tag<128>())
                             : nullptr;
    if (dt == BSA_DTYPE_BF16)
        return dpad == 64    ? f(type_tag<__nv_bfloat16>(), dim_tag<64>())
               : dpad == 128 ? f(type_tag<__nv_bfloat16>(), dim_tag<128>())
                             : nullptr;
    return nullptr;
}

/* f(feat_tag, gather_tag) with std::bool_constant tags for a call's
 * features and key tiles: picks among a family's four instances */
template <typename F> const void *by_flags(bool feat, bool gather, F &&f)
{
    using yes = std::true_type;
    using no = std::false_type;
    return feat ? (gather ? f(yes(), yes()) : f(yes(), no()))
                : (gather ? f(no(), yes()) : f(no(), no()));
}

} // namespace hopper
} // namespace bsa_cuda

#endif
