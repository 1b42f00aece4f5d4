/* tensor_util.h — helpers shared by the model parity tests: reference tensors from .npy fixtures,
 * the max-abs-error measure every parity bound is stated in, and the one rule for when a GPU test
 * skips. */
#ifndef DFM_TEST_TENSOR_UTIL_H
#define DFM_TEST_TENSOR_UTIL_H
#include "tensor/tensor.h"

/* Load dir/name (.npy, float32 or int32 as stored) into a new CPU tensor. quiet: a missing file
 * returns -1 without a message. Any other dtype is -1. */
int dfm_test_load_npy(const char *dir, const char *name, dfm_tensor *t, int quiet);
/* max |a - b| over F32 tensors of the same shape; 1e30 on a shape mismatch; NaN counts as huge. */
double dfm_test_max_abs_diff(const dfm_tensor *a, const dfm_tensor *b);
int dfm_test_is_dir(const char *path);

/* For a test that needs a CUDA device, first thing: `if (dfm_test_cuda_skip()) return;`.
 * 0: run (a usable device, selected: kernels/cuda/device.h dfm_cuda_ready).
 * 1: do not run. Either a skip, printing "  (no CUDA device: <why>; skipped)", when there is
 *    genuinely none here (no device detected, no NVIDIA driver, or a build without CUDA); or a
 *    recorded test failure, printing why, when CUDA is here but broken (a driver older than the
 *    runtime, a GPU without code in this build, a failed start: under ASan, CUDA needs
 *    ASAN_OPTIONS=protect_shadow_gap=0, which tests/run.sh sets), or when the environment has
 *    DFM_REQUIRE_CUDA=1 (a GPU machine: scripts/gpu-check.sh), where any skip is a failure. */
int dfm_test_cuda_skip(void);

#endif
