/* Tensor descriptor helpers for the two common memory layouts. */
#include "internal.h"

BSA_API bsa_tensor_desc bsa_tensor_bthd(int64_t batch, int64_t time, int64_t heads, int64_t dim)
{
    bsa_tensor_desc t = {{batch, heads, time, dim}, {time * heads * dim, dim, heads * dim, 1}};
    return t;
}

BSA_API bsa_tensor_desc bsa_tensor_bhtd(int64_t batch, int64_t heads, int64_t time, int64_t dim)
{
    bsa_tensor_desc t = {{batch, heads, time, dim}, {heads * time * dim, time * dim, dim, 1}};
    return t;
}
