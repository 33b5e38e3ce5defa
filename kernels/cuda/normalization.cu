// Normalizations: LayerNorm over trailing dims, Group/Instance norm per (batch, group),
// and a per-channel affine with activation (inference BatchNormalization, fused or not).
#include "common.cuh"

// Mean and 1/sqrt(var + eps) of `length` elements of row (two passes, float accumulation).
template <typename T>
__device__ void row_moments(const T* row, i64 length, float eps, float* mean, float* inv_std) {
    float total = 0.0f;
    for (i64 l = threadIdx.x; l < length; l += blockDim.x) total += to_f(row[l]);
    float m = block_reduce(total, COMBINE_SUM) / (float)length;
    float squares = 0.0f;
    for (i64 l = threadIdx.x; l < length; l += blockDim.x) {
        float d = to_f(row[l]) - m;
        squares += d * d;
    }
    float var = block_reduce(squares, COMBINE_SUM) / (float)length;
    *mean = m;
    *inv_std = rsqrtf(var + eps);
}

// One block per row of `length`; scale/bias (bias may be null) hold `length` floats.
template <typename T>
__device__ void layer_norm(const T* x, T* y, const float* scale, const float* bias, i64 length, float eps) {
    const T* row = x + blockIdx.x * length;
    T* out = y + blockIdx.x * length;
    float mean, inv_std;
    row_moments(row, length, eps, &mean, &inv_std);
    for (i64 l = threadIdx.x; l < length; l += blockDim.x) {
        float v = (to_f(row[l]) - mean) * inv_std * scale[l];
        out[l] = from_f<T>(bias ? v + bias[l] : v);
    }
}

// One block per (batch, group): the group's cpg channels of hw elements each, contiguous;
// scale/bias hold one float per channel.
template <typename T>
__device__ void group_norm(const T* x, T* y, const float* scale, const float* bias, int groups, i64 cpg, i64 hw, float eps) {
    i64 length = cpg * hw;
    const T* row = x + blockIdx.x * length;
    T* out = y + blockIdx.x * length;
    i64 first = (blockIdx.x % groups) * cpg;
    float mean, inv_std;
    row_moments(row, length, eps, &mean, &inv_std);
    for (i64 l = threadIdx.x; l < length; l += blockDim.x) {
        i64 c = first + l / hw;
        out[l] = from_f<T>((to_f(row[l]) - mean) * inv_std * scale[c] + bias[c]);
    }
}

// y = act(x * a[c] + b[c]) for x of (n, channels, hw).
template <typename T>
__device__ void channel_affine(const T* x, T* y, const float* a, const float* b, i64 total, i64 channels, i64 hw, int act, float p0, float p1) {
    EDGE_LOOP(i, total) {
        i64 c = (i / hw) % channels;
        y[i] = from_f<T>(activate(to_f(x[i]) * a[c] + b[c], act, p0, p1));
    }
}

#define EDGE_NORMALIZATION(S, T)                                                                           \
    extern "C" __global__ void layer_norm_##S(const T* x, T* y, const float* scale, const float* bias,      \
                                              i64 length, float eps) {                                      \
        layer_norm<T>(x, y, scale, bias, length, eps);                                                      \
    }                                                                                                       \
    extern "C" __global__ void group_norm_##S(const T* x, T* y, const float* scale, const float* bias,      \
                                              int groups, i64 cpg, i64 hw, float eps) {                     \
        group_norm<T>(x, y, scale, bias, groups, cpg, hw, eps);                                             \
    }                                                                                                       \
    extern "C" __global__ void channel_affine_##S(const T* x, T* y, const float* a, const float* b, i64 total, \
                                                  i64 channels, i64 hw, int act, float p0, float p1) {      \
        channel_affine<T>(x, y, a, b, total, channels, hw, act, p0, p1);                                    \
    }

EDGE_NORMALIZATION(f32, float)
EDGE_NORMALIZATION(f16, __half)
