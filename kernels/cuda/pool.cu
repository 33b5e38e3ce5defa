// 2-D max and average pooling over NCHW or NHWC images (pads, strides, dilations, ceil_mode
// resolved on the host).
#include "common.cuh"

// Window geometry of one pooling step (mirrors kernels/cuda/nn.py's Pool2d).
struct Pool2d {
    int h, w, oh, ow, kh, kw, sh, sw, dh, dw, ph, pw;
    int extent_h, extent_w;  // padded extent counted by count_include_pad (declared pads)
    int is_max, count_include_pad;
};

// Output element i of `images` images of `channels` channels; NHWC when `nhwc` (the channel
// varies fastest, so neighbouring threads read neighbouring inputs), else NCHW.
template <typename T, bool nhwc>
__device__ void pool2d(const T* x, T* y, i64 images, int channels, Pool2d g) {
    EDGE_LOOP(i, images * channels * g.oh * g.ow) {
        i64 image, c;
        int oy, ox;
        if (nhwc) {
            c = i % channels;
            i64 pixel = i / channels;
            ox = (int)(pixel % g.ow);
            oy = (int)(pixel / g.ow % g.oh);
            image = pixel / ((i64)g.ow * g.oh);
        } else {
            ox = (int)(i % g.ow);
            oy = (int)(i / g.ow % g.oh);
            i64 plane = i / ((i64)g.ow * g.oh);
            c = plane % channels;
            image = plane / channels;
        }
        const i64 step = nhwc ? channels : 1;  // elements from one input pixel to the next
        const T* in = nhwc ? x + image * g.h * g.w * channels + c : x + (image * channels + c) * g.h * g.w;
        float acc = g.is_max ? -__int_as_float(0x7f800000) : 0.0f;
        int counted = 0;
        for (int ky = 0; ky < g.kh; ++ky) {
            int iy = oy * g.sh - g.ph + ky * g.dh;
            for (int kx = 0; kx < g.kw; ++kx) {
                int ix = ox * g.sw - g.pw + kx * g.dw;
                bool inside = iy >= 0 && iy < g.h && ix >= 0 && ix < g.w;
                if (inside) {
                    float v = to_f(in[((i64)iy * g.w + ix) * step]);
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

#define POOL_KERNELS(S, T)                                                                                   \
    extern "C" __global__ void pool2d_nchw_##S(const T* x, T* y, i64 images, int channels, Pool2d g) {     \
        pool2d<T, false>(x, y, images, channels, g);                                                       \
    }                                                                                                      \
    extern "C" __global__ void pool2d_nhwc_##S(const T* x, T* y, i64 images, int channels, Pool2d g) {     \
        pool2d<T, true>(x, y, images, channels, g);                                                        \
    }

POOL_KERNELS(f32, float)
POOL_KERNELS(f16, __half)
