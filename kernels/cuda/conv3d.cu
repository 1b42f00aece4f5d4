// conv3d.cu — 3-D convolution (zero padding, strides) on the device: the twin of kernels/cpu's
// conv3d. ref: torch.nn.functional.conv3d
//
// Approach: im2col + cuBLAS, in blocks of output positions so that the column scratch stays
// bounded (DFM_CUDA_BLOCK_BYTES). With K = Cin*kt*kh*kw and P = T'*H'*W' output positions, a block
// of np positions [p0, p0 + np) is unfolded into col [K, np], then
//     y[:, p0 : p0 + np] = W [Cout, K] @ col [K, np]      (row-major, y's row stride P)
// and the bias is added once at the end. A 1x1x1 conv with unit stride and no padding multiplies
// x [Cin, P] directly. Weights in BF16/F16 are converted to f32 once per call; in a bf16 run the
// columns are written as bf16 and the weights rounded to bf16 (f32 accumulation in cuBLAS).
// Not here: an implicit-GEMM kernel (the unfolded block costs one extra pass over memory), groups,
// dilation.
#include "cuda/common.cuh"
#include "cuda/ops_cuda.h"

// ---------------------------------------------------------------------------------------------
// CUDA kernels

// Geometry of one conv, passed by value.
struct conv_geom {
    int64_t cin, t, h, w;    // input [Cin, T, H, W]
    int kt, kh, kw;          // kernel
    int st, sh, sw;          // strides (T, H, W)
    int pf, ptop, pleft;     // leading padding (front, top, left); trailing padding only sizes
    int64_t to, ho, wo;      // output T', H', W'
};

// col[kk, j] for kk < K, j < np: the input value that kernel tap kk = ((ci*kt + a)*kh + b)*kw + c
// (the weight layout [Cout, Cin, kt, kh, kw]) sees at output position p = p0 + j, where
// p = (ot*H' + oy)*W' + ox; zero where the tap falls into the padding. Grid y strides over the
// taps (one tap per block row, so its decomposition is uniform), grid x over positions; reads and
// writes are contiguous along j. Index math in 32 bits: the launcher checks K, P < 2^31.
template <typename T>
__global__ void im2col3d_kernel(const float *x, conv_geom g, int64_t p0, int64_t np, int64_t kk_n, T *col)
{
    const unsigned wo = (unsigned)g.wo, ho = (unsigned)g.ho;
    for (int64_t kk = blockIdx.y; kk < kk_n; kk += gridDim.y) {
        unsigned r = (unsigned)kk;
        int c = (int)(r % (unsigned)g.kw);
        r /= (unsigned)g.kw;
        int b = (int)(r % (unsigned)g.kh);
        r /= (unsigned)g.kh;
        int a = (int)(r % (unsigned)g.kt);
        int64_t ci = r / (unsigned)g.kt;
        const float *xc = x + ci * g.t * g.h * g.w;
        T *colk = col + kk * np;
        for (int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; j < np;
             j += (int64_t)gridDim.x * blockDim.x) {
            unsigned p = (unsigned)(p0 + j);
            unsigned ox = p % wo, q = p / wo;
            unsigned oy = q % ho, ot = q / ho;
            int64_t ti = (int64_t)ot * g.st + a - g.pf;
            int64_t yi = (int64_t)oy * g.sh + b - g.ptop;
            int64_t xi = (int64_t)ox * g.sw + c - g.pleft;
            float v = 0.0f;
            if (ti >= 0 && ti < g.t && yi >= 0 && yi < g.h && xi >= 0 && xi < g.w)
                v = xc[(ti * g.h + yi) * g.w + xi];
            dfm_dev_put(colk, j, v);
        }
    }
}

template <typename T>
static int im2col3d_launch(const float *x, const conv_geom &g, int64_t p0, int64_t np, int64_t kk_n, void *col)
{
    int64_t bx = (np + DFM_CUDA_THREADS - 1) / DFM_CUDA_THREADS;
    dim3 grid((unsigned)(bx < 4096 ? bx : 4096), (unsigned)(kk_n < 65535 ? kk_n : 65535));
    im2col3d_kernel<T><<<grid, DFM_CUDA_THREADS>>>(x, g, p0, np, kk_n, (T *)col);
    CUDA_CHECK_LAUNCH();
    return 0;
}

// ---------------------------------------------------------------------------------------------
// kernel launchers

extern "C" int dfm_cuda_conv3d(const float *x, int64_t cin, int64_t t, int64_t h, int64_t w,
                               const void *wt, dfm_dtype wdt, int64_t cout, int kt, int kh, int kw,
                               const void *bias, dfm_dtype bdt, float *y, const int stride[3],
                               const int pad[6], int bf16_compute)
{
    conv_geom g;
    g.cin = cin, g.t = t, g.h = h, g.w = w;
    g.kt = kt, g.kh = kh, g.kw = kw;
    g.st = stride[0], g.sh = stride[1], g.sw = stride[2];
    g.pf = pad[0], g.ptop = pad[2], g.pleft = pad[4];
    if (kt <= 0 || kh <= 0 || kw <= 0 || g.st <= 0 || g.sh <= 0 || g.sw <= 0)
        return dfm_fail(DFM_E_ARG, "conv3d: kernel %dx%dx%d stride %dx%dx%d", kt, kh, kw, g.st, g.sh, g.sw);
    int64_t tp = t + pad[0] + pad[1] - kt, hp = h + pad[2] + pad[3] - kh, wp = w + pad[4] + pad[5] - kw;
    if (tp < 0 || hp < 0 || wp < 0)
        return dfm_fail(DFM_E_ARG, "conv3d: kernel %dx%dx%d larger than padded input", kt, kh, kw);
    g.to = tp / g.st + 1, g.ho = hp / g.sh + 1, g.wo = wp / g.sw + 1;
    int64_t P = g.to * g.ho * g.wo, K = cin * kt * kh * kw;
    if (cout <= 0 || P <= 0) return 0;
    DFM_CHECK_RC(dfm_cuda_check_int("conv3d", "T'*H'*W'", P));
    DFM_CHECK_RC(dfm_cuda_check_int("conv3d", "Cin*kt*kh*kw", K));
    if (K <= 0) { // no input channels: y = bias (or 0)
        CUDA_CHECK(cudaMemset(y, 0, (size_t)(cout * P) * sizeof(float)));
        return dfm_cuda_add_bias(y, cout, P, P, bias, bdt, 1);
    }

    // weights as GEMM operands: [Cout, K] in f32, or bf16 in a bf16 run
    dfm_dtype gdt = bf16_compute ? DFM_BF16 : DFM_F32;
    size_t ges = dfm_dtype_size(gdt);
    const void *gw = wt;
    if (wdt != gdt) {
        void *s;
        DFM_CHECK_RC(dfm_cuda_scratch(DFM_SCRATCH_B, (size_t)(cout * K) * ges, &s));
        DFM_CHECK_RC(dfm_cuda_convert(s, gdt, wt, wdt, cout * K));
        gw = s;
    }

    int pointwise = kt == 1 && kh == 1 && kw == 1 && g.st == 1 && g.sh == 1 && g.sw == 1 &&
                    pad[0] == 0 && pad[1] == 0 && pad[2] == 0 && pad[3] == 0 && pad[4] == 0 && pad[5] == 0;
    if (pointwise && !bf16_compute) { // x is already the column matrix [Cin, P]
        DFM_CHECK_RC(dfm_cuda_gemm_rm(0, 0, cout, P, K, 1.0f, gw, K, 0, x, P, 0, DFM_F32, 0.0f, y, P, 0, 1));
        return dfm_cuda_add_bias(y, cout, P, P, bias, bdt, 1);
    }

    int64_t np = (int64_t)(DFM_CUDA_BLOCK_BYTES / ((size_t)K * ges));
    if (np < 1) np = 1;
    if (np > P) np = P;
    void *col;
    DFM_CHECK_RC(dfm_cuda_scratch(DFM_SCRATCH_A, (size_t)(K * np) * ges, &col));
    for (int64_t p0 = 0; p0 < P; p0 += np) {
        int64_t nb = P - p0 < np ? P - p0 : np;
        if (bf16_compute) DFM_CHECK_RC(im2col3d_launch<uint16_t>(x, g, p0, nb, K, col));
        else DFM_CHECK_RC(im2col3d_launch<float>(x, g, p0, nb, K, col));
        DFM_CHECK_RC(dfm_cuda_gemm_rm(0, 0, cout, nb, K, 1.0f, gw, K, 0, col, nb, 0, gdt, 0.0f, y + p0,
                                      P, 0, 1));
    }
    return dfm_cuda_add_bias(y, cout, P, P, bias, bdt, 1);
}
