// Reductions over any set of axes, ArgMax/ArgMin along one axis, Softmax/LogSoftmax.
#include "common.cuh"

// Reduce op codes shared with kernels/cuda/reduce.py (REDUCE_CODES).
enum Reduce { R_SUM, R_MEAN, R_MAX, R_MIN, R_PROD, R_L1, R_L2, R_SUM_SQUARE, R_LOG_SUM, R_LOG_SUM_EXP };

__device__ __forceinline__ int reduce_combine(int op) {
    return op == R_MAX ? COMBINE_MAX : op == R_MIN ? COMBINE_MIN : op == R_PROD ? COMBINE_PROD : COMBINE_SUM;
}

// One block per output element. Output o sits at offset strided_offset(o, kdim, kshape,
// kstride) of x; its reduced elements at strided_offset(r, rdim, rshape, rstride) from there.
template <typename T>
__device__ void reduce_axes(const T* x, T* y, i64 count, int op, int kdim, Dims kshape, Dims kstride,
                            int rdim, Dims rshape, Dims rstride) {
    i64 o = blockIdx.x;
    const T* base = x + strided_offset(o, kdim, kshape, kstride);
    int how = reduce_combine(op);
    float shift = 0.0f;
    if (op == R_LOG_SUM_EXP) {
        float peak = -__int_as_float(0x7f800000);
        for (i64 r = threadIdx.x; r < count; r += blockDim.x) peak = fmaxf(peak, to_f(base[strided_offset(r, rdim, rshape, rstride)]));
        peak = block_reduce(peak, COMBINE_MAX);
        shift = isfinite(peak) ? peak : 0.0f;
    }
    float acc = combine_identity(how);
    for (i64 r = threadIdx.x; r < count; r += blockDim.x) {
        float v = to_f(base[strided_offset(r, rdim, rshape, rstride)]);
        if (op == R_L1) v = fabsf(v);
        else if (op == R_L2 || op == R_SUM_SQUARE) v = v * v;
        else if (op == R_LOG_SUM_EXP) v = expf(v - shift);
        acc = combine(acc, v, how);
    }
    acc = block_reduce(acc, how);
    if (threadIdx.x == 0) {
        if (op == R_MEAN) acc = acc / (float)count;
        else if (op == R_L2) acc = sqrtf(acc);
        else if (op == R_LOG_SUM) acc = logf(acc);
        else if (op == R_LOG_SUM_EXP) acc = logf(acc) + shift;
        y[o] = from_f<T>(acc);
    }
}

// x viewed as (outer, length, inner): one thread per (outer, inner) scans the axis; ties go
// to the first index (the last with select_last).
template <typename T>
__device__ void arg_reduce(const T* x, i64* y, i64 outer, i64 length, i64 inner, int is_max, int select_last) {
    EDGE_LOOP(i, outer * inner) {
        i64 o = i / inner, k = i - o * inner;
        const T* row = x + o * length * inner + k;
        float best = to_f(row[0]);
        i64 index = 0;
        for (i64 l = 1; l < length; ++l) {
            float v = to_f(row[l * inner]);
            bool better = is_max ? (select_last ? v >= best : v > best) : (select_last ? v <= best : v < best);
            if (better || (v != v && best == best)) { best = v; index = l; }
        }
        y[i] = index;
    }
}

// Softmax (log_softmax: LogSoftmax) of x viewed as (outer, length, inner) along length; one
// block per (outer, inner) row.
template <typename T>
__device__ void softmax(const T* x, T* y, i64 length, i64 inner, int log_softmax) {
    i64 row = blockIdx.x;
    i64 o = row / inner, k = row - o * inner;
    const T* in = x + o * length * inner + k;
    T* out = y + o * length * inner + k;
    float peak = -__int_as_float(0x7f800000);
    for (i64 l = threadIdx.x; l < length; l += blockDim.x) peak = fmaxf(peak, to_f(in[l * inner]));
    peak = block_reduce(peak, COMBINE_MAX);
    float total = 0.0f;
    for (i64 l = threadIdx.x; l < length; l += blockDim.x) total += expf(to_f(in[l * inner]) - peak);
    total = block_reduce(total, COMBINE_SUM);
    float log_total = logf(total), inv = 1.0f / total;
    for (i64 l = threadIdx.x; l < length; l += blockDim.x) {
        float shifted = to_f(in[l * inner]) - peak;
        out[l * inner] = from_f<T>(log_softmax ? shifted - log_total : expf(shifted) * inv);
    }
}

#define EDGE_REDUCE(S, T)                                                                                   \
    extern "C" __global__ void reduce_##S(const T* x, T* y, i64 count, int op, int kdim, Dims kshape,        \
                                          Dims kstride, int rdim, Dims rshape, Dims rstride) {               \
        reduce_axes<T>(x, y, count, op, kdim, kshape, kstride, rdim, rshape, rstride);                       \
    }                                                                                                        \
    extern "C" __global__ void arg_reduce_##S(const T* x, i64* y, i64 outer, i64 length, i64 inner, int is_max, \
                                              int select_last) {                                             \
        arg_reduce<T>(x, y, outer, length, inner, is_max, select_last);                                      \
    }                                                                                                        \
    extern "C" __global__ void softmax_##S(const T* x, T* y, i64 length, i64 inner, int log_softmax) {       \
        softmax<T>(x, y, length, inner, log_softmax);                                                        \
    }

EDGE_REDUCE(f32, float)
EDGE_REDUCE(f16, __half)
