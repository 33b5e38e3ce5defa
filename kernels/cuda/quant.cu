// QuantizeLinear / DequantizeLinear, per tensor or per axis (scale and zero point per channel),
// and the fake quantization that puts an INT8 layer's float tensors on their grid.
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

// y = x put on its INT8 grid (in place when y == x): the CPU's INT8 conversions on the GPU.
template <typename T>
__device__ void fake_quantize_all(const T* x, T* y, i64 n, FakeQuant q) {
    EDGE_LOOP(i, n) y[i] = from_f<T>(fake_quantize(to_f(x[i]), q));
}

extern "C" __global__ void fake_quantize_f32(const float* x, float* y, i64 n, FakeQuant q) { fake_quantize_all<float>(x, y, n, q); }
extern "C" __global__ void fake_quantize_f16(const __half* x, __half* y, i64 n, FakeQuant q) { fake_quantize_all<__half>(x, y, n, q); }
