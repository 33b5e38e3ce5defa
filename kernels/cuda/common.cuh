// Shared device helpers of the edgetrt CUDA kernels: half/float conversion, N-d strided
// indexing (broadcasts, transposes, slices), the fused-epilogue activations, INT8 fake
// quantization, block reductions.
#pragma once
#include <cuda_fp16.h>

#define EDGE_MAX_DIMS 8

typedef long long i64;

// Shape or strides of up to EDGE_MAX_DIMS axes, passed by value (the host packs 8 int64s).
struct Dims {
    i64 v[EDGE_MAX_DIMS];
};

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half_rn(x); }

// Offset (in elements) of flat row-major index i of `shape` in a tensor with `strides`.
__device__ __forceinline__ i64 strided_offset(i64 i, int ndim, const Dims& shape, const Dims& strides) {
    i64 offset = 0;
#pragma unroll
    for (int d = EDGE_MAX_DIMS - 1; d >= 0; --d) {
        if (d < ndim) {
            i64 q = i / shape.v[d];
            offset += (i - q * shape.v[d]) * strides.v[d];
            i = q;
        }
    }
    return offset;
}

// Activation codes shared with kernels/cuda/launch.py (ACTIVATION_CODES).
enum Activation {
    ACT_NONE = 0, ACT_RELU = 1, ACT_CLIP = 2, ACT_LEAKY_RELU = 3, ACT_SIGMOID = 4,
    ACT_HARD_SIGMOID = 5, ACT_HARD_SWISH = 6, ACT_SILU = 7, ACT_GELU = 8, ACT_TANH = 9,
};

__device__ __forceinline__ float sigmoidf(float v) { return 1.0f / (1.0f + expf(-v)); }

// The epilogue activation `act` with its parameters (the FusedConv/FusedGemm attributes).
__device__ __forceinline__ float activate(float v, int act, float p0, float p1) {
    switch (act) {
    case ACT_RELU: return v > 0.0f ? v : (v == v ? 0.0f : v);
    case ACT_CLIP: return fminf(fmaxf(v, p0), p1);
    case ACT_LEAKY_RELU: return v < 0.0f ? v * p0 : v;
    case ACT_SIGMOID: return sigmoidf(v);
    case ACT_HARD_SIGMOID: return fminf(fmaxf(v * p0 + p1, 0.0f), 1.0f);
    case ACT_HARD_SWISH: return v * fminf(fmaxf(v * (1.0f / 6.0f) + 0.5f, 0.0f), 1.0f);
    case ACT_SILU: return v * sigmoidf(v);
    case ACT_GELU: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    case ACT_TANH: return tanhf(v);
    default: return v;
    }
}

// Fake quantization to an INT8 grid, as edge.quant.numerics.Quantizer computes it in float32:
// code = clamp(rint(x / scale) + zero, low, high), value = (code - zero) * scale (IEEE division
// and rounding, never contracted, so GPU and CPU agree bit for bit). scale 0: no quantizer.
struct FakeQuant {
    float scale, zero, low, high;
};

__device__ __forceinline__ float quantize_code(float v, const FakeQuant& q) {
    return fminf(fmaxf(__fadd_rn(rintf(__fdiv_rn(v, q.scale)), q.zero), q.low), q.high);
}

__device__ __forceinline__ float fake_quantize(float v, const FakeQuant& q) {
    return __fmul_rn(__fsub_rn(quantize_code(v, q), q.zero), q.scale);
}

// Grid-stride loop over n elements.
#define EDGE_LOOP(i, n) for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)blockDim.x * gridDim.x)

enum Combine { COMBINE_SUM = 0, COMBINE_MAX = 1, COMBINE_MIN = 2, COMBINE_PROD = 3 };

__device__ __forceinline__ float combine(float a, float b, int how) {
    switch (how) {
    case COMBINE_MAX: return fmaxf(a, b);
    case COMBINE_MIN: return fminf(a, b);
    case COMBINE_PROD: return a * b;
    default: return a + b;
    }
}

__device__ __forceinline__ float combine_identity(int how) {
    switch (how) {
    case COMBINE_MAX: return -__int_as_float(0x7f800000);
    case COMBINE_MIN: return __int_as_float(0x7f800000);
    case COMBINE_PROD: return 1.0f;
    default: return 0.0f;
    }
}

// Reduce one value per thread over the block (blockDim.x a multiple of 32, at most 1024);
// every thread gets the result.
__device__ __forceinline__ float block_reduce(float v, int how) {
    __shared__ float partial[32];
    __shared__ float result;
    for (int offset = 16; offset > 0; offset >>= 1) v = combine(v, __shfl_xor_sync(0xffffffffu, v, offset), how);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();  // partial may still be read by a previous call
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0) {
        int warps = blockDim.x >> 5;
        v = lane < warps ? partial[lane] : combine_identity(how);
        for (int offset = 16; offset > 0; offset >>= 1) v = combine(v, __shfl_xor_sync(0xffffffffu, v, offset), how);
        if (lane == 0) result = v;
    }
    __syncthreads();
    return result;
}
