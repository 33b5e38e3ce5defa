// Data movement by element size: strided N-d copies (Transpose, Slice, Concat, Split,
// Expand, ChannelShuffle), Pad, Gather, and separable Resize taps.
#include "common.cuh"

// dst[strided_offset(i, dst_strides)] = src[strided_offset(i, src_strides)] over `shape`.
template <typename T>
__device__ void strided_copy(const T* src, T* dst, i64 n, int ndim, Dims shape, Dims src_strides, Dims dst_strides) {
    EDGE_LOOP(i, n) dst[strided_offset(i, ndim, shape, dst_strides)] = src[strided_offset(i, ndim, shape, src_strides)];
}

// Pad modes shared with kernels/cuda/tensor.py.
enum PadMode { PAD_CONSTANT = 0, PAD_EDGE = 1, PAD_REFLECT = 2, PAD_WRAP = 3 };

// y (out_shape, contiguous) from x (in_shape, contiguous) padded by `begin` per axis.
template <typename T>
__device__ void pad(const T* x, T* y, i64 n, int ndim, Dims out_shape, Dims in_shape, Dims begin, int mode, T value) {
    EDGE_LOOP(i, n) {
        i64 rest = i, offset = 0, stride = 1;
        bool inside = true;
        for (int d = ndim - 1; d >= 0; --d) {
            i64 q = rest / out_shape.v[d];
            i64 c = rest - q * out_shape.v[d] - begin.v[d];
            rest = q;
            i64 size = in_shape.v[d];
            if (c < 0 || c >= size) {
                if (mode == PAD_CONSTANT) inside = false;
                else if (mode == PAD_EDGE) c = c < 0 ? 0 : size - 1;
                else if (mode == PAD_WRAP) c = ((c % size) + size) % size;
                else if (size == 1) c = 0;
                else {
                    i64 period = 2 * (size - 1);
                    c = ((c % period) + period) % period;
                    if (c >= size) c = period - c;
                }
            }
            offset += c * stride;
            stride *= size;
        }
        y[i] = inside ? x[offset] : value;
    }
}

// out (outer, count, inner) = data (outer, axis_dim, inner) at indices (count of them,
// negative ones counted from the end).
template <typename T, typename I>
__device__ void gather(const T* data, const I* indices, T* y, i64 outer, i64 axis_dim, i64 inner, i64 count) {
    EDGE_LOOP(i, outer * count * inner) {
        i64 k = i % inner, j = (i / inner) % count, o = i / (inner * count);
        i64 index = (i64)indices[j];
        if (index < 0) index += axis_dim;
        index = index < 0 ? 0 : (index >= axis_dim ? axis_dim - 1 : index);
        y[i] = data[(o * axis_dim + index) * inner + k];
    }
}

#define EDGE_COPY(S, T)                                                                                     \
    extern "C" __global__ void strided_copy_##S(const T* src, T* dst, i64 n, int ndim, Dims shape,          \
                                                Dims src_strides, Dims dst_strides) {                       \
        strided_copy<T>(src, dst, n, ndim, shape, src_strides, dst_strides);                                \
    }                                                                                                       \
    extern "C" __global__ void pad_##S(const T* x, T* y, i64 n, int ndim, Dims out_shape, Dims in_shape,    \
                                       Dims begin, int mode, T value) {                                     \
        pad<T>(x, y, n, ndim, out_shape, in_shape, begin, mode, value);                                     \
    }                                                                                                       \
    extern "C" __global__ void gather_i64_##S(const T* data, const long long* indices, T* y, i64 outer,      \
                                              i64 axis_dim, i64 inner, i64 count) {                         \
        gather<T, long long>(data, indices, y, outer, axis_dim, inner, count);                              \
    }                                                                                                       \
    extern "C" __global__ void gather_i32_##S(const T* data, const int* indices, T* y, i64 outer,           \
                                              i64 axis_dim, i64 inner, i64 count) {                         \
        gather<T, int>(data, indices, y, outer, axis_dim, inner, count);                                    \
    }

EDGE_COPY(b1, unsigned char)
EDGE_COPY(b2, unsigned short)
EDGE_COPY(b4, unsigned int)
EDGE_COPY(b8, unsigned long long)

// Separable resize of the last two axes: y[p, oy, ox] = sum_a sum_b wy[oy][a] wx[ox][b]
// x[p, iy[oy][a], ix[ox][b]] with `taps` taps per axis (1 nearest, 2 linear, 4 cubic).
template <typename T>
__device__ void resize2d(const T* x, T* y, i64 planes, int h, int w, int oh, int ow, int taps,
                         const int* iy, const float* wy, const int* ix, const float* wx) {
    EDGE_LOOP(i, planes * oh * ow) {
        i64 plane = i / ((i64)oh * ow);
        int rest = (int)(i - plane * oh * ow);
        int oy = rest / ow, ox = rest - oy * ow;
        const T* in = x + plane * h * w;
        float acc = 0.0f;
        for (int a = 0; a < taps; ++a) {
            float row = 0.0f;
            for (int b = 0; b < taps; ++b) row += wx[ox * taps + b] * to_f(in[iy[oy * taps + a] * w + ix[ox * taps + b]]);
            acc += wy[oy * taps + a] * row;
        }
        y[i] = from_f<T>(acc);
    }
}

extern "C" __global__ void resize2d_f32(const float* x, float* y, i64 planes, int h, int w, int oh, int ow, int taps,
                                        const int* iy, const float* wy, const int* ix, const float* wx) {
    resize2d<float>(x, y, planes, h, w, oh, ow, taps, iy, wy, ix, wx);
}
extern "C" __global__ void resize2d_f16(const __half* x, __half* y, i64 planes, int h, int w, int oh, int ow, int taps,
                                        const int* iy, const float* wy, const int* ix, const float* wx) {
    resize2d<__half>(x, y, planes, h, w, oh, ow, taps, iy, wy, ix, wx);
}
