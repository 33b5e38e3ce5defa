// Elementwise kernels: unary math and activations, binary arithmetic and comparisons with
// N-d broadcasting (a flat fast path when no operand broadcasts), Where, Cast.
#include "common.cuh"

// Unary op codes shared with kernels/cuda/elementwise.py (UNARY_CODES).
enum Unary {
    U_ABS, U_NEG, U_EXP, U_LOG, U_SQRT, U_RECIPROCAL, U_FLOOR, U_CEIL, U_ROUND, U_SIGN,
    U_SIN, U_COS, U_TAN, U_ASIN, U_ACOS, U_ATAN, U_SINH, U_COSH, U_ASINH, U_ACOSH, U_ATANH,
    U_TANH, U_ERF, U_SOFTSIGN, U_SOFTPLUS, U_MISH, U_RELU, U_LEAKY_RELU, U_SIGMOID,
    U_HARD_SIGMOID, U_HARD_SWISH, U_ELU, U_SELU, U_CELU, U_GELU, U_GELU_TANH,
    U_THRESHOLDED_RELU, U_SILU, U_SWISH, U_CLIP, U_IDENTITY,
};

__device__ __forceinline__ float softplusf(float v) { return v > 20.0f ? v : log1pf(expf(v)); }

__device__ __forceinline__ float unary_op(float v, int op, float p0, float p1) {
    switch (op) {
    case U_ABS: return fabsf(v);
    case U_NEG: return -v;
    case U_EXP: return expf(v);
    case U_LOG: return logf(v);
    case U_SQRT: return sqrtf(v);
    case U_RECIPROCAL: return 1.0f / v;
    case U_FLOOR: return floorf(v);
    case U_CEIL: return ceilf(v);
    case U_ROUND: return rintf(v);
    case U_SIGN: return v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : v);
    case U_SIN: return sinf(v);
    case U_COS: return cosf(v);
    case U_TAN: return tanf(v);
    case U_ASIN: return asinf(v);
    case U_ACOS: return acosf(v);
    case U_ATAN: return atanf(v);
    case U_SINH: return sinhf(v);
    case U_COSH: return coshf(v);
    case U_ASINH: return asinhf(v);
    case U_ACOSH: return acoshf(v);
    case U_ATANH: return atanhf(v);
    case U_TANH: return tanhf(v);
    case U_ERF: return erff(v);
    case U_SOFTSIGN: return v / (1.0f + fabsf(v));
    case U_SOFTPLUS: return softplusf(v);
    case U_MISH: return v * tanhf(softplusf(v));
    case U_RELU: return activate(v, ACT_RELU, p0, p1);
    case U_LEAKY_RELU: return v >= 0.0f ? v : v * p0;
    case U_SIGMOID: return sigmoidf(v);
    case U_HARD_SIGMOID: return activate(v, ACT_HARD_SIGMOID, p0, p1);
    case U_HARD_SWISH: return activate(v, ACT_HARD_SWISH, p0, p1);
    case U_ELU: return v > 0.0f ? v : expm1f(v) * p0;
    case U_SELU: return v > 0.0f ? v * p1 : expm1f(v) * (p0 * p1);
    case U_CELU: return fmaxf(v, 0.0f) + fminf(expm1f(v / p0) * p0, 0.0f);
    case U_GELU: return activate(v, ACT_GELU, p0, p1);
    case U_GELU_TANH: return 0.5f * v * (1.0f + tanhf((v + 0.044715f * v * v * v) * 0.79788456080286536f));
    case U_THRESHOLDED_RELU: return v > p0 ? v : 0.0f;
    case U_SILU: return v * sigmoidf(v);
    case U_SWISH: return v * sigmoidf(v * p0);
    case U_CLIP: return fminf(fmaxf(v, p0), p1);
    default: return v;
    }
}

template <typename T>
__device__ void unary(const T* x, T* y, i64 n, int op, float p0, float p1) {
    EDGE_LOOP(i, n) y[i] = from_f<T>(unary_op(to_f(x[i]), op, p0, p1));
}

// Binary op codes shared with kernels/cuda/elementwise.py (BINARY_CODES); comparisons last.
enum Binary { B_ADD, B_SUB, B_MUL, B_DIV, B_POW, B_MAX, B_MIN, B_PRELU, B_FMOD, B_EQUAL, B_LESS, B_LESS_EQUAL, B_GREATER, B_GREATER_EQUAL };

__device__ __forceinline__ float binary_op(float a, float b, int op) {
    switch (op) {
    case B_ADD: return a + b;
    case B_SUB: return a - b;
    case B_MUL: return a * b;
    case B_DIV: return a / b;
    case B_POW: return powf(a, b);
    case B_MAX: return fmaxf(a, b);
    case B_MIN: return fminf(a, b);
    case B_PRELU: return a >= 0.0f ? a : a * b;
    case B_FMOD: return fmodf(a, b);
    case B_EQUAL: return a == b;
    case B_LESS: return a < b;
    case B_LESS_EQUAL: return a <= b;
    case B_GREATER: return a > b;
    default: return a >= b;
    }
}

// y = a op b where neither operand broadcasts (all three of n elements).
template <typename T, typename O>
__device__ void binary_flat(const T* a, const T* b, O* y, i64 n, int op) {
    EDGE_LOOP(i, n) y[i] = (O)from_f<T>(binary_op(to_f(a[i]), to_f(b[i]), op));
}

// y = a op b over the output `shape`; sa/sb are the operands' strides (0 on broadcast axes).
template <typename T, typename O>
__device__ void binary_bcast(const T* a, const T* b, O* y, i64 n, int op, int ndim, Dims shape, Dims sa, Dims sb) {
    EDGE_LOOP(i, n) {
        float va = to_f(a[strided_offset(i, ndim, shape, sa)]);
        float vb = to_f(b[strided_offset(i, ndim, shape, sb)]);
        y[i] = (O)from_f<T>(binary_op(va, vb, op));
    }
}

template <typename T>
__device__ void where_bcast(const unsigned char* c, const T* a, const T* b, T* y, i64 n, int ndim, Dims shape, Dims sc, Dims sa, Dims sb) {
    EDGE_LOOP(i, n) {
        y[i] = c[strided_offset(i, ndim, shape, sc)] ? a[strided_offset(i, ndim, shape, sa)] : b[strided_offset(i, ndim, shape, sb)];
    }
}

#define EDGE_ELEMENTWISE(S, T)                                                                       \
    extern "C" __global__ void unary_##S(const T* x, T* y, i64 n, int op, float p0, float p1) {      \
        unary<T>(x, y, n, op, p0, p1);                                                               \
    }                                                                                                \
    extern "C" __global__ void binary_flat_##S(const T* a, const T* b, T* y, i64 n, int op) {        \
        binary_flat<T, T>(a, b, y, n, op);                                                           \
    }                                                                                                \
    /* y = act(y + bias[channel] + z) in place (ACTIVATION_CODES; bias, z may be null): the    */ \
    /* epilogue of a library conv run without its own, over an NCHW output of c channels of hw */ \
    extern "C" __global__ void conv_epilogue_##S(T* y, const T* bias, const T* z, i64 n, i64 hw, int c, \
                                                 int act, float p0, float p1) {                      \
        EDGE_LOOP(i, n) {                                                                            \
            float v = to_f(y[i]);                                                                    \
            if (bias) v += to_f(bias[(i / hw) % c]);                                                 \
            if (z) v += to_f(z[i]);                                                                  \
            y[i] = from_f<T>(activate(v, act, p0, p1));                                              \
        }                                                                                            \
    }                                                                                                \
    extern "C" __global__ void binary_bcast_##S(const T* a, const T* b, T* y, i64 n, int op, int ndim, \
                                                Dims shape, Dims sa, Dims sb) {                      \
        binary_bcast<T, T>(a, b, y, n, op, ndim, shape, sa, sb);                                     \
    }                                                                                                \
    extern "C" __global__ void compare_bcast_##S(const T* a, const T* b, unsigned char* y, i64 n, int op, \
                                                 int ndim, Dims shape, Dims sa, Dims sb) {           \
        EDGE_LOOP(i, n) {                                                                            \
            float va = to_f(a[strided_offset(i, ndim, shape, sa)]);                                  \
            float vb = to_f(b[strided_offset(i, ndim, shape, sb)]);                                  \
            y[i] = binary_op(va, vb, op) != 0.0f;                                                    \
        }                                                                                            \
    }                                                                                                \
    /* y = x is NaN (nan), +inf (pos), -inf (neg): IsNaN and IsInf */                         \
    extern "C" __global__ void classify_##S(const T* x, unsigned char* y, i64 n, int nan, int pos, int neg) { \
        EDGE_LOOP(i, n) {                                                                            \
            float v = to_f(x[i]);                                                                    \
            y[i] = (nan && isnan(v)) || (pos && isinf(v) && v > 0.0f) || (neg && isinf(v) && v < 0.0f); \
        }                                                                                            \
    }                                                                                                \
    extern "C" __global__ void where_##S(const unsigned char* c, const T* a, const T* b, T* y, i64 n, int ndim, \
                                         Dims shape, Dims sc, Dims sa, Dims sb) {                    \
        where_bcast<T>(c, a, b, y, n, ndim, shape, sc, sa, sb);                                      \
    }

EDGE_ELEMENTWISE(f32, float)
EDGE_ELEMENTWISE(f16, __half)

// Cast between the dtypes the backend keeps on the device; float to integer truncates
// toward zero and bool is (value != 0), as numpy's astype.
template <typename S> __device__ __forceinline__ double cast_in(S v) { return (double)v; }
template <> __device__ __forceinline__ double cast_in<__half>(__half v) { return (double)__half2float(v); }
template <typename D> __device__ __forceinline__ D cast_out(double v) { return (D)v; }
template <> __device__ __forceinline__ __half cast_out<__half>(double v) { return __float2half_rn((float)v); }
template <> __device__ __forceinline__ bool cast_out<bool>(double v) { return v != 0.0; }

#define EDGE_CAST(SN, S, DN, D)                                                             \
    extern "C" __global__ void cast_##SN##_##DN(const S* x, D* y, i64 n) {                  \
        EDGE_LOOP(i, n) y[i] = cast_out<D>(cast_in<S>(x[i]));                               \
    }
#define EDGE_CAST_FROM(SN, S)                                                                \
    EDGE_CAST(SN, S, f32, float) EDGE_CAST(SN, S, f16, __half) EDGE_CAST(SN, S, f64, double) \
    EDGE_CAST(SN, S, i64, long long) EDGE_CAST(SN, S, i32, int) EDGE_CAST(SN, S, i8, signed char) \
    EDGE_CAST(SN, S, u8, unsigned char) EDGE_CAST(SN, S, b8, bool)

EDGE_CAST_FROM(f32, float)
EDGE_CAST_FROM(f16, __half)
EDGE_CAST_FROM(f64, double)
EDGE_CAST_FROM(i64, long long)
EDGE_CAST_FROM(i32, int)
EDGE_CAST_FROM(i8, signed char)
EDGE_CAST_FROM(u8, unsigned char)
EDGE_CAST_FROM(b8, bool)
