/* tensor_util.h — helpers shared by the model parity tests: reference tensors from .npy fixtures
 * and the max-abs-error measure every parity bound is stated in. */
#ifndef DFM_TEST_TENSOR_UTIL_H
#define DFM_TEST_TENSOR_UTIL_H
#include "tensor/tensor.h"

/* Load dir/name (.npy, float32 or int32 as stored) into a new CPU tensor. quiet: a missing file
 * returns -1 without a message. Any other dtype is -1. */
int dfm_test_load_npy(const char *dir, const char *name, dfm_tensor *t, int quiet);
/* max |a - b| over F32 tensors of the same shape; 1e30 on a shape mismatch; NaN counts as huge. */
double dfm_test_max_abs_diff(const dfm_tensor *a, const dfm_tensor *b);
int dfm_test_is_dir(const char *path);

#endif
