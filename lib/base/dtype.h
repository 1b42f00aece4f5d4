/* dtype.h — element types, named as safetensors names them, and exact scalar conversions.
 * Lives in base so that file formats (io) and tensors (tensor) share one definition. */
#ifndef DFM_BASE_DTYPE_H
#define DFM_BASE_DTYPE_H
#include <stddef.h>
#include <stdint.h>

typedef enum { DFM_F32 = 0, DFM_BF16, DFM_F16, DFM_U8, DFM_I32, DFM_I64 } dfm_dtype;

size_t dfm_dtype_size(dfm_dtype t);
const char *dfm_dtype_name(dfm_dtype t);                /* "F32", "BF16", ... */
int dfm_dtype_parse(const char *name, dfm_dtype *out);  /* 0, or -1 if unknown */

/* Scalar conversions, round to nearest even; NaN stays NaN, overflow to f16 gives inf. */
uint16_t dfm_f32_to_bf16(float f);
float dfm_bf16_to_f32(uint16_t h);
uint16_t dfm_f32_to_f16(float f);
float dfm_f16_to_f32(uint16_t h);
/* Convert n elements between float dtypes (F32, BF16, F16) in memory; same dtype copies. */
int dfm_convert_floats(void *dst, dfm_dtype dt, const void *src, dfm_dtype st, size_t n);

#endif
