/* Instances of the Hopper dK/dV kernel (dkdv_wgmma.cuh); see
 * wgmma_instances.h. */
#include "dkdv_wgmma.cuh"
#include "wgmma_instances.h"

namespace bsa_cuda
{
namespace hopper
{

const void *dkdv_kernel_of(bsa_dtype dt, int dpad, bool feat, bool gather)
{
    return by_shape(dt, dpad, [&](auto t, auto d) -> const void * {
        using T = typename decltype(t)::type;
        constexpr int DP = decltype(d)::value;
        return by_flags(feat, gather, [](auto fe, auto ga) {
            return (
                const void *)&dkdv_wgmma_kernel<T, DP, decltype(fe)::value, decltype(ga)::value>;
        });
    });
}

} // namespace hopper
} // namespace bsa_cuda
