/* device.h — the CUDA backend's entry points that the C side may call: whether a usable device
 * is here, device memory, copies. Compiled by nvcc whenever it exists (DFM_HAVE_CUDA).
 *
 * Device selection happens once per process, on the first call that needs the device: the
 * current device (device 0 unless CUDA_VISIBLE_DEVICES or the caller chose another) must answer
 * and run a probe kernel from this build. Memory then comes from that device's stream-ordered
 * pool (cudaMallocAsync / cudaFreeAsync on the legacy default stream, the one every op uses),
 * which keeps freed memory for reuse: a free neither waits for the device nor returns memory to
 * the driver until dfm_cuda_release_scratch() trims the pool.
 * Not here: several devices in one process (one process per GPU: dfm_cuda_select). */
#ifndef DFM_KERNELS_CUDA_DEVICE_H
#define DFM_KERNELS_CUDA_DEVICE_H
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif

/* Whether this process can run CUDA work. Decided by the first call and cached:
 *    1  a usable device: it answered and ran a probe kernel from this build;
 *    0  no CUDA device here: the driver detects none (cudaErrorNoDevice; also CUDA_VISIBLE_DEVICES
 *       empty or naming none), or no NVIDIA driver is installed (libcuda.so.1 absent: the runtime
 *       says cudaErrorInsufficientDriver and cudaDriverGetVersion 0; or only the stub libcuda);
 *   <0  DFM_E_UNSUPPORTED: CUDA is here but unusable: a driver older than this build's runtime
 *       (cudaErrorInsufficientDriver with a driver installed), a GPU this build has no code for
 *       ("no usable CUDA device (sm_75 ...): this build has code for sm_80, ..."), a driver that
 *       cannot JIT-compile this build's PTX, a failed initialisation (cudaErrorInitializationError;
 *       under AddressSanitizer also an allocation failure unless ASAN_OPTIONS has
 *       protect_shadow_gap=0), a device that is busy or prohibited.
 * For 0 and <0 the reason, one line, is recorded with dfm_fail (dfm_errmsg: "no CUDA device: ..."
 * for 0) on every call, and put in *why when why is not NULL (a static string valid for the
 * process's life: the bare reason for 0, e.g. "no NVIDIA driver installed (libcuda.so.1 not
 * found)"; the whole sentence for <0; "ok" for 1). */
int dfm_cuda_ready(const char **why);
/* Which visible device this process uses: device `index % count` (count: the devices the driver
 * shows, after CUDA_VISIBLE_DEVICES) becomes the current device when the device is decided (the
 * first dfm_cuda_ready). For one process per GPU under a launcher, index is the local rank.
 * Call it before any CUDA work; after the decision it changes nothing and returns
 * DFM_E_ARG with the reason recorded. index < 0: leave the current device (device 0). The
 * current device is the calling thread's: dfm issues its CUDA work from the thread that decided
 * it. */
int dfm_cuda_select(int index);

/* Number of CUDA devices the driver reports, without probing them; 0 when there are none or CUDA
 * cannot start (its error text in *why when why is not NULL; "ok" otherwise). Whether they can
 * run this build: dfm_cuda_ready. Clears the error it may leave. */
int dfm_cuda_device_count(const char **why);
/* "NAME (sm_XY)" of device i into name (n bytes) and its memory; 0, or a negative DFM_E_* code
 * with the CUDA error recorded (dfm_fail) and cleared. */
int dfm_cuda_device_info(int i, char *name, int n, unsigned long long *mem_bytes);
/* Free and total memory of the selected device (dfm_cuda_ready first), in bytes; 0, or a negative
 * DFM_E_* code with the reason recorded. Memory the pool holds for reuse counts as used. */
int dfm_cuda_mem_info(size_t *free_bytes, size_t *total_bytes);
/* The CUDA version the installed driver supports and that of the runtime this build links, as
 * 1000 * major + 10 * minor (13000 = 13.0); 0 when unknown (no driver: *driver is 0). */
void dfm_cuda_versions(int *driver, int *runtime);
/* The GPU architectures this build has code for, e.g. "sm_80, sm_90, sm_100, sm_120 and PTX
 * compute_90" (static). */
const char *dfm_cuda_build_code(void);

/* n bytes (at least 1) of device memory from the pool, on the current device (dfm_cuda_ready
 * first). 0, or a negative DFM_E_* code (DFM_E_NOMEM out of memory, DFM_E_UNSUPPORTED no usable
 * device) with *p NULL and the reason recorded (dfm_fail; *why, when not NULL, is dfm_errmsg()).
 * The memory may still be in use by work queued before: it is stream-ordered, so kernels and
 * copies issued after the allocation see it ready. */
int dfm_cuda_malloc(void **p, size_t n, const char **why);
/* Return p (from dfm_cuda_malloc; NULL is a no-op) to the pool, after the work queued so far.
 * A CUDA error here is reported as a warning with file:line and cleared. */
void dfm_cuda_free(void *p);
/* kind: 0 host->device, 1 device->host, 2 device->device. Synchronous. 0, or -1 with the CUDA
 * error text in *why (the error cleared). */
int dfm_cuda_memcpy(void *dst, const void *src, size_t n, int kind, const char **why);
int dfm_cuda_memset0(void *p, size_t n, const char **why);

#ifdef __cplusplus
}
#endif
#endif
