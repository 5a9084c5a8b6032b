/*
 * Memory shared between strided tensors (internal): the aliasing rule of
 * bsa.h (outputs overlap no input, no other output and not themselves).
 */
#ifndef BSA_OVERLAP_H
#define BSA_OVERLAP_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A tensor's memory: base pointer, element size, dims and strides in
 * bytes (positive). */
typedef struct bsa_span {
    const void *base;
    int64_t esize;
    int n;
    int64_t dims[4], strides[4];
} bsa_span;

/* 1 if two index tuples of (dims, strides in any unit) give one offset. */
int bsa_strides_self_overlap(const int64_t *dims, const int64_t *strides, int n);

/* 1 if some byte belongs to an element of both tensors (exact for views of
 * one shape and strides, as a fused qkv buffer's; otherwise any overlap of
 * their byte ranges counts). */
int bsa_spans_overlap(const bsa_span *a, const bsa_span *b);

#ifdef __cplusplus
}
#endif
#endif
