/* Instances of the Hopper dQ kernel (dq_wgmma.cuh); see wgmma_instances.h. */
#include "dq_wgmma.cuh"
#include "wgmma_instances.h"

namespace bsa_cuda
{
namespace hopper
{

const void *dq_kernel_of(bsa_dtype dt, int dpad, bool feat, bool gather)
{
    return by_shape(dt, dpad, [&](auto t, auto d) -> const void * {
        using T = typename decltype(t)::type;
        constexpr int DP = decltype(d)::value;
        return by_flags(feat, gather, [](auto fe, auto ga) {
            return (
                const void *)&dq_wgmma_kernel<T, DP, 2, decltype(fe)::value, decltype(ga)::value>;
        });
    });
}

} // namespace hopper
} // namespace bsa_cuda
