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
        const void *k[2][2] = {
            {(const void *)&dkdv_wgmma_kernel<T, DP, false, false>,
             (const void *)&dkdv_wgmma_kernel<T, DP, false, true>},
            {(const void *)&dkdv_wgmma_kernel<T, DP, true, false>,
             (const void *)&dkdv_wgmma_kernel<T, DP, true, true>},
        };
        return k[feat][gather];
    });
}

} // namespace hopper
} // namespace bsa_cuda
