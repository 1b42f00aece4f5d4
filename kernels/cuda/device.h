/* device.h — the CUDA backend's entry points that the C side may call. Compiled by nvcc whenever
 * it exists (DFM_HAVE_CUDA); everything degrades to "no device" without a GPU or a driver. */
#ifndef DFM_KERNELS_CUDA_DEVICE_H
#define DFM_KERNELS_CUDA_DEVICE_H
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices; 0 when there is no device or no driver (reason in *why, a
 * static string, when why is not NULL). */
int dfm_cuda_device_count(const char **why);
/* Name and memory of device `i` into name (n bytes); 0 on success. */
int dfm_cuda_device_info(int i, char *name, int n, unsigned long long *mem_bytes);

/* Memory on the current device. Return 0, or -1 with the CUDA error text in *why. */
int dfm_cuda_malloc(void **p, size_t n, const char **why);
void dfm_cuda_free(void *p);
/* kind: 0 host->device, 1 device->host, 2 device->device. Synchronous. */
int dfm_cuda_memcpy(void *dst, const void *src, size_t n, int kind, const char **why);
int dfm_cuda_memset0(void *p, size_t n, const char **why);

#ifdef __cplusplus
}
#endif
#endif
