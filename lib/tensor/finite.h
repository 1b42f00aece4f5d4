/* finite.h — the check every model stage runs on its float inputs and outputs, so that a NaN or an
 * Inf stops a sample with a message instead of passing on as a black frame or a silent garbage
 * latent: "latents.npy has 3 non-finite values (first NaN at [0,2,1,5])". Stages call it on what
 * they read (latents.npy, text.npy), on what they compute (before storing) and on what they store
 * (a float32 value past float16's range becomes Inf); the transformer and the trainer call it on
 * their activations and losses the same way.
 *
 * Dispatch by device: kernels/cpu/finite.c or kernels/cuda/finite.cu. Not here: repairing values
 * (clamping, nan_to_num) — a non-finite number is an error, never fixed up.
 */
#ifndef DFM_TENSOR_FINITE_H
#define DFM_TENSOR_FINITE_H
#include <stddef.h>
#include <stdint.h>
#include "tensor/tensor.h"

typedef struct {
    int64_t count; /* non-finite elements */
    int64_t first; /* row-major index of the first of them; -1 when count is 0 */
    float value;   /* that element: NaN, +Inf or -Inf (0 when count is 0) */
} dfm_nonfinite;

/* Scan t (F32, BF16 or F16, on the CPU or a CUDA device; the data may be unaligned on the CPU,
 * e.g. a view into a .npy field). Other dtypes hold no non-finite values. 0 or a DFM_E_* code
 * (a CUDA failure). */
int dfm_tensor_nonfinite(const dfm_tensor *t, dfm_nonfinite *out);

/* 0 when every element of t is finite. Otherwise DFM_E_NONFINITE with the message
 * "<what> has N non-finite value(s) (first NaN|+Inf|-Inf at [i,j,...])", the index in t's shape;
 * or another DFM_E_* code when the scan itself fails. */
int dfm_tensor_check_finite(const dfm_tensor *t, const char *what);

/* The part of that message after "has ": "N non-finite value(s) (first NaN at [i,j,...])", for
 * callers that word the rest themselves. Returns buf. */
const char *dfm_nonfinite_str(const dfm_nonfinite *r, const dfm_tensor *t, char *buf, size_t n);

#endif
