// 2-D convolution (NCHW, groups, strides, pads, dilations) with the fused epilogue
// act(conv + bias + residual): a direct kernel (one thread per output; depthwise and tiny
// convs; NCHW or NHWC) and a tiled implicit GEMM (weights x im2col columns formed in shared memory).
#include "common.cuh"
#include "conv.cuh"

template <typename T>
__device__ __forceinline__ float conv_epilogue(float v, const Conv2d& g, const T* bias, const T* z, i64 i, int m) {
    if (bias) v += to_f(bias[m]);
    if (z) v += to_f(z[i]);
    return activate(v, g.act, g.p0, g.p1);
}

// One thread per output; NHWC when `nhwc` (output channel fastest, so neighbouring threads of
// a depthwise conv read neighbouring inputs), else NCHW. Weights are (M, C/groups, kH, kW) either way.
template <typename T, bool nhwc>
__device__ void conv2d_direct(const T* x, const T* wt, const T* bias, const T* z, T* y, Conv2d g) {
    int cg = g.c / g.groups, mg = g.m / g.groups;
    i64 total = (i64)g.n * g.m * g.oh * g.ow;
    EDGE_LOOP(i, total) {
        int ox, oy, m, n;
        if (nhwc) {
            m = (int)(i % g.m);
            ox = (int)((i / g.m) % g.ow);
            oy = (int)((i / ((i64)g.m * g.ow)) % g.oh);
            n = (int)(i / ((i64)g.m * g.ow * g.oh));
        } else {
            ox = (int)(i % g.ow);
            oy = (int)((i / g.ow) % g.oh);
            m = (int)((i / ((i64)g.ow * g.oh)) % g.m);
            n = (int)(i / ((i64)g.ow * g.oh * g.m));
        }
        int c0 = (m / mg) * cg;
        float acc = 0.0f;
        for (int c = 0; c < cg; ++c) {
            const T* taps = wt + ((i64)m * cg + c) * g.kh * g.kw;
            for (int ky = 0; ky < g.kh; ++ky) {
                int iy = oy * g.sh - g.ph + ky * g.dh;
                if (iy < 0 || iy >= g.h) continue;
                for (int kx = 0; kx < g.kw; ++kx) {
                    int ix = ox * g.sw - g.pw + kx * g.dw;
                    if (ix < 0 || ix >= g.w) continue;
                    i64 at = nhwc ? (((i64)n * g.h + iy) * g.w + ix) * g.c + c0 + c : (((i64)n * g.c + c0 + c) * g.h + iy) * g.w + ix;
                    acc += to_f(x[at]) * to_f(taps[ky * g.kw + kx]);
                }
            }
        }
        y[i] = from_f<T>(conv_epilogue(acc, g, bias, z, i, m));
    }
}

#define CONV_BM 64
#define CONV_BN 64
#define CONV_BK 16

// Block (p tile, m tile, group), 256 threads, each 4x4 outputs: rows ty + 16i, columns tx + 16j.
template <typename T>
__device__ void conv2d_igemm(const T* x, const T* wt, const T* bias, const T* z, T* y, Conv2d g) {
    __shared__ float a_tile[CONV_BK][CONV_BM];
    __shared__ float b_tile[CONV_BK][CONV_BN];
    int cg = g.c / g.groups, mg = g.m / g.groups;
    int taps = g.kh * g.kw;
    int depth = cg * taps;
    i64 positions = (i64)g.n * g.oh * g.ow;
    int group = blockIdx.z;
    int m0 = blockIdx.y * CONV_BM;
    i64 p0 = (i64)blockIdx.x * CONV_BN;
    int t = threadIdx.x, tx = t % 16, ty = t / 16;
    float acc[4][4] = {};
    for (int k0 = 0; k0 < depth; k0 += CONV_BK) {
        for (int e = t; e < CONV_BK * CONV_BM; e += 256) {
            int kk = e % CONV_BK, r = e / CONV_BK;
            int m = m0 + r, k = k0 + kk;
            a_tile[kk][r] = (m < mg && k < depth) ? to_f(wt[((i64)group * mg + m) * depth + k]) : 0.0f;
        }
        for (int e = t; e < CONV_BK * CONV_BN; e += 256) {
            int pp = e % CONV_BN, kk = e / CONV_BN;
            i64 p = p0 + pp;
            int k = k0 + kk;
            float v = 0.0f;
            if (p < positions && k < depth) {
                int c = k / taps, tap = k - c * taps;
                int ky = tap / g.kw, kx = tap - ky * g.kw;
                int ox = (int)(p % g.ow), oy = (int)((p / g.ow) % g.oh), n = (int)(p / ((i64)g.ow * g.oh));
                int iy = oy * g.sh - g.ph + ky * g.dh, ix = ox * g.sw - g.pw + kx * g.dw;
                if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w)
                    v = to_f(x[(((i64)n * g.c + group * cg + c) * g.h + iy) * g.w + ix]);
            }
            b_tile[kk][pp] = v;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < CONV_BK; ++kk) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = a_tile[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; ++j) b[j] = b_tile[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        int m = m0 + ty + 16 * i;
        if (m >= mg) continue;
        int channel = group * mg + m;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            i64 p = p0 + tx + 16 * j;
            if (p >= positions) continue;
            i64 spatial = (i64)g.oh * g.ow;
            i64 n = p / spatial, s = p - n * spatial;
            i64 out = (n * g.m + channel) * spatial + s;
            y[out] = from_f<T>(conv_epilogue(acc[i][j], g, bias, z, out, channel));
        }
    }
}

#define EDGE_CONV(S, T)                                                                                        \
    extern "C" __global__ void conv2d_direct_##S(const T* x, const T* w, const T* b, const T* z, T* y, Conv2d g) { \
        conv2d_direct<T, false>(x, w, b, z, y, g);                                                             \
    }                                                                                                          \
    extern "C" __global__ void conv2d_direct_nhwc_##S(const T* x, const T* w, const T* b, const T* z, T* y,     \
                                                      Conv2d g) {                                              \
        conv2d_direct<T, true>(x, w, b, z, y, g);                                                              \
    }                                                                                                          \
    extern "C" __global__ void __launch_bounds__(256) conv2d_igemm_##S(const T* x, const T* w, const T* b,      \
                                                                         const T* z, T* y, Conv2d g) {         \
        conv2d_igemm<T>(x, w, b, z, y, g);                                                                     \
    }

EDGE_CONV(f32, float)
EDGE_CONV(f16, __half)
