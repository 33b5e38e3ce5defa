// QuantizeLinear / DequantizeLinear, per tensor or per axis (scale and zero point per channel).
#include "common.cuh"

// x viewed as (outer, channels, inner); channel c uses scale[c], zero[c].
template <typename T, typename Q>
__device__ void quantize(const T* x, Q* y, const float* scale, const int* zero, i64 n, i64 channels, i64 inner, int low, int high) {
    EDGE_LOOP(i, n) {
        i64 c = (i / inner) % channels;
        float q = rintf(to_f(x[i]) / scale[c]) + (float)zero[c];
        y[i] = (Q)(int)fminf(fmaxf(q, (float)low), (float)high);
    }
}

template <typename Q, typename T>
__device__ void dequantize(const Q* x, T* y, const float* scale, const int* zero, i64 n, i64 channels, i64 inner) {
    EDGE_LOOP(i, n) {
        i64 c = (i / inner) % channels;
        y[i] = from_f<T>((float)((int)x[i] - zero[c]) * scale[c]);
    }
}

#define EDGE_QUANT(S, T, QS, Q)                                                                            \
    extern "C" __global__ void quantize_##S##_##QS(const T* x, Q* y, const float* scale, const int* zero,   \
                                                   i64 n, i64 channels, i64 inner, int low, int high) {     \
        quantize<T, Q>(x, y, scale, zero, n, channels, inner, low, high);                                   \
    }                                                                                                       \
    extern "C" __global__ void dequantize_##QS##_##S(const Q* x, T* y, const float* scale, const int* zero, \
                                                     i64 n, i64 channels, i64 inner) {                      \
        dequantize<Q, T>(x, y, scale, zero, n, channels, inner);                                            \
    }

EDGE_QUANT(f32, float, i8, signed char)
EDGE_QUANT(f32, float, u8, unsigned char)
EDGE_QUANT(f16, __half, i8, signed char)
EDGE_QUANT(f16, __half, u8, unsigned char)
