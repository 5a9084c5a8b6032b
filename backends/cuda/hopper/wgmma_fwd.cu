/* Instances of the Hopper forwards (fwd_wgmma.cuh, fwd_ws_wgmma.cuh); see
 * wgmma_instances.h. */
#include "fwd_wgmma.cuh"
#include "fwd_ws_wgmma.cuh"
#include "wgmma_instances.h"

namespace bsa_cuda
{
namespace hopper
{

template <typename T, int DP, int NWG> const void *fwd_of(bool feat, bool gather)
{
    return by_flags(feat, gather, [](auto fe, auto ga) {
        return (
            const void *)&fwd_wgmma_kernel<T, DP, NWG, decltype(fe)::value, decltype(ga)::value>;
    });
}

const void *fwd_kernel_of(int nwg, bsa_dtype dt, int dpad, bool feat, bool gather)
{
    return by_shape(dt, dpad, [&](auto t, auto d) -> const void * {
        using T = typename decltype(t)::type;
        constexpr int DP = decltype(d)::value;
        return nwg == 2 ? fwd_of<T, DP, 2>(feat, gather) : fwd_of<T, DP, 1>(feat, gather);
    });
}

const void *fwd_ws_kernel_of(bsa_dtype dt, int dpad, bool pred)
{
    return by_shape(dt, dpad, [pred](auto t, auto d) -> const void * {
        using T = typename decltype(t)::type;
        constexpr int DP = decltype(d)::value;
        return pred ? (const void *)&fwd_ws_wgmma_kernel<T, DP, true>
                    : (const void *)&fwd_ws_wgmma_kernel<T, DP, false>;
    });
}

} // namespace hopper
} // namespace bsa_cuda
