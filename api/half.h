/*
 * fp16 / bf16 <-> fp32 conversions on the host (internal; also used by the
 * tests and tools).  Round to nearest even; NaN stays NaN; overflow -> inf.
 */
#ifndef BSA_HALF_H
#define BSA_HALF_H

#include <stdint.h>
#include <string.h>

static inline float bsa_bits_to_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint32_t bsa_f32_to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float bsa_bf16_to_f32(uint16_t h)
{
    return bsa_bits_to_f32((uint32_t)h << 16);
}

static inline uint16_t bsa_f32_to_bf16(float f)
{
    uint32_t u = bsa_f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float bsa_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f)
        return bsa_bits_to_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        /* zero or subnormal: value = man * 2^-24 */
        float v = (float)man * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return bsa_bits_to_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

static inline uint16_t bsa_f32_to_f16(float f)
{
    uint32_t u = bsa_f32_to_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00u); /* NaN */
    if (a >= 0x477ff000u)                  /* rounds to >= 65520: inf */
        return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) { /* below 2^-14: subnormal or zero */
        float v = bsa_bits_to_f32(a);
        /* scale to units of 2^-24 and round to nearest even */
        float s = v * 16777216.0f;
        uint32_t m = (uint32_t)s;
        float r = s - (float)m;
        if (r > 0.5f || (r == 0.5f && (m & 1u)))
            m++;
        return (uint16_t)(sign | m);
    }
    uint32_t exp = (a >> 23) - 112u;
    uint32_t man = a & 0x7fffffu;
    uint32_t h = (exp << 10) | (man >> 13);
    uint32_t rest = man & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
        h++;
    return (uint16_t)(sign | h);
}

#endif
