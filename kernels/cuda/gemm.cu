// Batched GEMM with the fused epilogue y = act(alpha * op(A) op(B) + beta * C): a tiled
// shared-memory SIMT kernel (float or half I/O, float accumulation) and a half-precision
// tensor-core kernel (wmma 16x16x16, float accumulation). Operands are read through
// element strides, so transposes and broadcast batch dims cost no copies.
#include "common.cuh"
#include <mma.h>

// One GEMM step's shapes and strides (mirrors kernels/cuda/linalg.py's GemmGeometry).
struct Gemm {
    i64 m, n, k;
    i64 a_sm, a_sk, b_sk, b_sn;  // element strides of A(m, k) and B(k, n)
    i64 c_sm, c_sn;               // strides of the addend C (0 on broadcast axes)
    int batch_dims;
    Dims batch_shape, a_batch, b_batch;  // batch index -> A and B offsets; Y is contiguous
    float alpha, beta;
    int act;
    float p0, p1;
};

template <typename T>
__device__ __forceinline__ void gemm_store(T* y, const T* c, const Gemm& g, i64 row, i64 col, float v) {
    v *= g.alpha;
    if (c) v += g.beta * to_f(c[row * g.c_sm + col * g.c_sn]);
    y[row * g.n + col] = from_f<T>(activate(v, g.act, g.p0, g.p1));
}

#define GEMM_BM 64
#define GEMM_BN 64
#define GEMM_BK 16

// Block (n tile, m tile, batch), 256 threads, each 4x4 outputs: rows ty + 16i, cols tx + 16j.
template <typename T>
__device__ void gemm_tiled(const T* a, const T* b, const T* c, T* y, Gemm g) {
    __shared__ float a_tile[GEMM_BK][GEMM_BM];
    __shared__ float b_tile[GEMM_BK][GEMM_BN];
    i64 batch = blockIdx.z;
    a += strided_offset(batch, g.batch_dims, g.batch_shape, g.a_batch);
    b += strided_offset(batch, g.batch_dims, g.batch_shape, g.b_batch);
    y += batch * g.m * g.n;
    i64 m0 = (i64)blockIdx.y * GEMM_BM, n0 = (i64)blockIdx.x * GEMM_BN;
    int t = threadIdx.x, tx = t % 16, ty = t / 16;
    float acc[4][4] = {};
    for (i64 k0 = 0; k0 < g.k; k0 += GEMM_BK) {
        for (int e = t; e < GEMM_BK * GEMM_BM; e += 256) {
            int kk = e % GEMM_BK, r = e / GEMM_BK;
            i64 row = m0 + r, k = k0 + kk;
            a_tile[kk][r] = (row < g.m && k < g.k) ? to_f(a[row * g.a_sm + k * g.a_sk]) : 0.0f;
        }
        for (int e = t; e < GEMM_BK * GEMM_BN; e += 256) {
            int cc = e % GEMM_BN, kk = e / GEMM_BN;
            i64 col = n0 + cc, k = k0 + kk;
            b_tile[kk][cc] = (col < g.n && k < g.k) ? to_f(b[k * g.b_sk + col * g.b_sn]) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < GEMM_BK; ++kk) {
            float av[4], bv[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) av[i] = a_tile[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; ++j) bv[j] = b_tile[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += av[i] * bv[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        i64 row = m0 + ty + 16 * i;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            i64 col = n0 + tx + 16 * j;
            if (row < g.m && col < g.n) gemm_store(y, c, g, row, col, acc[i][j]);
        }
    }
}

extern "C" __global__ void __launch_bounds__(256) gemm_tiled_f32(const float* a, const float* b, const float* c, float* y, Gemm g) {
    gemm_tiled<float>(a, b, c, y, g);
}
extern "C" __global__ void __launch_bounds__(256) gemm_tiled_f16(const __half* a, const __half* b, const __half* c, __half* y, Gemm g) {
    gemm_tiled<__half>(a, b, c, y, g);
}

#define WMMA_BK 32
#define WMMA_A_LD (WMMA_BK + 8)
#define WMMA_B_LD (GEMM_BN + 8)
#define WMMA_C_LD (GEMM_BN + 4)

// Block (n tile, m tile, batch) of 64x64, 4 warps in 2x2, each 32x32 as 2x2 16x16 fragments;
// tiles are staged through shared memory with zeros past the edges, so any M, N, K works.
extern "C" __global__ void __launch_bounds__(128) gemm_wmma_f16(const __half* a, const __half* b, const __half* c, __half* y, Gemm g) {
    using namespace nvcuda;
    __shared__ __align__(32) __half a_tile[GEMM_BM][WMMA_A_LD];
    __shared__ __align__(32) __half b_tile[WMMA_BK][WMMA_B_LD];
    __shared__ __align__(32) float c_tile[GEMM_BM][WMMA_C_LD];
    i64 batch = blockIdx.z;
    a += strided_offset(batch, g.batch_dims, g.batch_shape, g.a_batch);
    b += strided_offset(batch, g.batch_dims, g.batch_shape, g.b_batch);
    y += batch * g.m * g.n;
    i64 m0 = (i64)blockIdx.y * GEMM_BM, n0 = (i64)blockIdx.x * GEMM_BN;
    int t = threadIdx.x, warp = t / 32;
    int wm = warp / 2, wn = warp % 2;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
    const __half zero = __float2half(0.0f);
    for (i64 k0 = 0; k0 < g.k; k0 += WMMA_BK) {
        for (int e = t; e < GEMM_BM * WMMA_BK; e += 128) {
            int kk = e % WMMA_BK, r = e / WMMA_BK;
            i64 row = m0 + r, k = k0 + kk;
            a_tile[r][kk] = (row < g.m && k < g.k) ? a[row * g.a_sm + k * g.a_sk] : zero;
        }
        for (int e = t; e < WMMA_BK * GEMM_BN; e += 128) {
            int cc = e % GEMM_BN, kk = e / GEMM_BN;
            i64 col = n0 + cc, k = k0 + kk;
            b_tile[kk][cc] = (col < g.n && k < g.k) ? b[k * g.b_sk + col * g.b_sn] : zero;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < WMMA_BK; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> fb[2];
#pragma unroll
            for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fa[i], &a_tile[wm * 32 + i * 16][kk], WMMA_A_LD);
#pragma unroll
            for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], &b_tile[kk][wn * 32 + j * 16], WMMA_B_LD);
#pragma unroll
            for (int i = 0; i < 2; ++i)
#pragma unroll
                for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j)
            wmma::store_matrix_sync(&c_tile[wm * 32 + i * 16][wn * 32 + j * 16], acc[i][j], WMMA_C_LD, wmma::mem_row_major);
    __syncthreads();
    for (int e = t; e < GEMM_BM * GEMM_BN; e += 128) {
        int r = e / GEMM_BN, cc = e % GEMM_BN;
        i64 row = m0 + r, col = n0 + cc;
        if (row < g.m && col < g.n) gemm_store(y, c, g, row, col, c_tile[r][cc]);
    }
}
