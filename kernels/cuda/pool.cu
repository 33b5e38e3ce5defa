// 2-D max and average pooling over NCHW (pads, strides, dilations, ceil_mode resolved on the host).
#include "common.cuh"

// Window geometry of one pooling step (mirrors kernels/cuda/nn.py's PoolGeometry).
struct Pool2d {
    int h, w, oh, ow, kh, kw, sh, sw, dh, dw, ph, pw;
    int extent_h, extent_w;  // padded extent counted by count_include_pad (declared pads)
    int is_max, count_include_pad;
};

template <typename T>
__device__ void pool2d(const T* x, T* y, i64 planes, Pool2d g) {
    EDGE_LOOP(i, planes * g.oh * g.ow) {
        i64 plane = i / ((i64)g.oh * g.ow);
        int rest = (int)(i - plane * g.oh * g.ow);
        int oy = rest / g.ow, ox = rest - oy * g.ow;
        const T* in = x + plane * g.h * g.w;
        float acc = g.is_max ? -__int_as_float(0x7f800000) : 0.0f;
        int counted = 0;
        for (int ky = 0; ky < g.kh; ++ky) {
            int iy = oy * g.sh - g.ph + ky * g.dh;
            for (int kx = 0; kx < g.kw; ++kx) {
                int ix = ox * g.sw - g.pw + kx * g.dw;
                bool inside = iy >= 0 && iy < g.h && ix >= 0 && ix < g.w;
                if (inside) {
                    float v = to_f(in[iy * g.w + ix]);
                    acc = g.is_max ? (v > acc || v != v ? v : acc) : acc + v;
                    counted += 1;
                } else if (g.count_include_pad && iy + g.ph < g.extent_h && ix + g.pw < g.extent_w) {
                    counted += 1;
                }
            }
        }
        y[i] = from_f<T>(g.is_max ? acc : acc / (float)counted);
    }
}

extern "C" __global__ void pool2d_f32(const float* x, float* y, i64 planes, Pool2d g) { pool2d<float>(x, y, planes, g); }
extern "C" __global__ void pool2d_f16(const __half* x, __half* y, i64 planes, Pool2d g) { pool2d<__half>(x, y, planes, g); }
