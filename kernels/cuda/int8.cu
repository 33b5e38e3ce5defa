// INT8 arithmetic of Conv / Gemm / MatMul layers: an im2col packing that quantizes float
// activations to INT8 codes, and a tensor-core GEMM of INT8 codes (mma.sync m16n8k32, s8 x s8
// -> s32, sm_80 and later) whose epilogue is the CPU INT8 path's FP32 one: per-channel scale,
// bias, residual, activation and, for tensors written as INT8, requantization to the grid.
#include "common.cuh"
#include "conv.cuh"

#define IMMA_BK 32             // depth per pipeline stage: one m16n8k32 step
#define IMMA_LD (IMMA_BK + 16) // bytes per shared-memory row: 16-byte aligned, fragment reads conflict-free
#define IMMA_STAGES 3          // cp.async pipeline depth

// The INT8 code of one input element: a float tensor's quantized, a tensor stored as INT8
// codes (the plan's INT8 storage) read as it is.
__device__ __forceinline__ signed char input_code(float v, const FakeQuant& q) { return (signed char)(int)quantize_code(v, q); }
__device__ __forceinline__ signed char input_code(__half v, const FakeQuant& q) { return input_code(to_f(v), q); }
__device__ __forceinline__ signed char input_code(signed char v, const FakeQuant&) { return v; }

// A residual element as the float the CPU adds: a float tensor put on its grid (zq), an INT8
// one decoded (code * scale: the same float32 product).
__device__ __forceinline__ float residual_value(float v, const FakeQuant& q) { return q.scale != 0.0f ? fake_quantize(v, q) : v; }
__device__ __forceinline__ float residual_value(__half v, const FakeQuant& q) { return residual_value(to_f(v), q); }
__device__ __forceinline__ float residual_value(signed char v, const FakeQuant& q) { return __fmul_rn(__int2float_rn((int)v - (int)q.zero), q.scale); }

// An epilogue value as the output stores it: requantized to its grid (yq) in float storage,
// or its INT8 code.
template <typename T>
__device__ __forceinline__ T output_value(float v, const FakeQuant& q) { return from_f<T>(q.scale != 0.0f ? fake_quantize(v, q) : v); }
template <>
__device__ __forceinline__ signed char output_value<signed char>(float v, const FakeQuant& q) { return (signed char)(int)quantize_code(v, q); }

// cols (rows x kp, row-major): row p = output position (n, oy, ox), column k = window tap;
// the tap's input as its INT8 code, 0 for padding taps and for k >= c*kh*kw. NCHW input: taps
// ordered (c, ky, kx), the weight's own (M, C, kH, kW) order, threads of a warp on neighbouring
// rows (neighbouring input pixels). NHWC input: taps ordered (ky, kx, c), the weight packed
// KRSC, threads of a warp on neighbouring 16-column chunks of a row (neighbouring channels, so
// reads and writes coalesce). A GEMM's A (M x K) is the 1x1 convolution of n = M images of
// c = K channels (transposed: one image of h = M rows). Each thread fills 16 columns of one row.
template <typename T, bool nhwc>
__device__ void im2col_quantize(const T* x, signed char* cols, Conv2d g, int kp, FakeQuant q) {
    const int taps = g.kh * g.kw, depth = g.c * taps, chunks = kp / 16;
    const i64 rows = (i64)g.n * g.oh * g.ow;
    EDGE_LOOP(i, rows * chunks) {
        const i64 p = nhwc ? i / chunks : i % rows;
        const int k = (int)(nhwc ? i % chunks : i / rows) * 16;
        int ox = (int)(p % g.ow), oy = (int)((p / g.ow) % g.oh), n = (int)(p / ((i64)g.ow * g.oh));
        int c, ky, kx;
        if (nhwc) {
            c = k % g.c;
            ky = (k / g.c) / g.kw;
            kx = (k / g.c) - ky * g.kw;
        } else {
            c = k / taps;
            ky = (k - c * taps) / g.kw;
            kx = (k - c * taps) - ky * g.kw;
        }
        int iy0 = oy * g.sh - g.ph, ix0 = ox * g.sw - g.pw;
        union {
            signed char code[16];
            uint4 bytes;
        } out;
#pragma unroll
        for (int j = 0; j < 16; ++j) {
            signed char code = 0;
            if (k + j < depth) {
                int iy = iy0 + ky * g.dh, ix = ix0 + kx * g.dw;
                if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w) {
                    i64 at = nhwc ? (((i64)n * g.h + iy) * g.w + ix) * g.c + c : (((i64)n * g.c + c) * g.h + iy) * g.w + ix;
                    code = input_code(x[at], q);
                }
                if (nhwc) {
                    if (++c == g.c) {
                        c = 0;
                        if (++kx == g.kw) {
                            kx = 0;
                            ++ky;
                        }
                    }
                } else if (++kx == g.kw) {
                    kx = 0;
                    if (++ky == g.kh) {
                        ky = 0;
                        ++c;
                    }
                }
            }
            out.code[j] = code;
        }
        *reinterpret_cast<uint4*>(cols + p * kp + k) = out.bytes;
    }
}

// One INT8 GEMM step (mirrors kernels/cuda/int8.py's Imma): y[row, col] for row < rows,
// col < cols, written at ((row / spatial) * cols + col) * spatial + row % spatial (NCHW for a
// convolution; row-major, a GEMM's or an NHWC convolution's, for spatial = 1); the residual
// read likewise through its strides.
struct Imma {
    i64 rows;
    int cols, kp;
    i64 spatial;
    i64 z_image, z_channel, z_spatial;
    float z_beta;
    FakeQuant zq, yq;  // the residual's quantizer, the output's requantizer (scale 0: none)
    int act;
    float p0, p1;
};

// 16 bytes global -> shared, asynchronously; zeros when !fill (rows past the matrix).
__device__ __forceinline__ void copy_async16(void* shared, const void* global, bool fill) {
    unsigned address = (unsigned)__cvta_generic_to_shared(shared);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(address), "l"(global), "r"(fill ? 16 : 0));
}

__device__ __forceinline__ void copy_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

template <int PENDING>
__device__ __forceinline__ void copy_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(PENDING));
}

// d += a (16x32, row-major) * b (32x8, column-major): int8 codes, int32 sums.
__device__ __forceinline__ void mma_s8(int* d, const unsigned* a, const unsigned* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Stage `ROWS` rows of IMMA_BK codes starting at depth k0 (two 16-byte copies per row).
template <int ROWS, int THREADS>
__device__ __forceinline__ void stage_rows(signed char (*tile)[IMMA_LD], const signed char* matrix, i64 first, i64 count, int kp, int k0) {
    for (int chunk = threadIdx.x; chunk < ROWS * 2; chunk += THREADS) {
        int r = chunk >> 1, half = (chunk & 1) * 16;
        bool inside = first + r < count;
        copy_async16(&tile[r][half], inside ? matrix + (first + r) * kp + k0 + half : matrix, inside);
    }
}

// The FP32 epilogue of one accumulator: float(acc) * scale[col] (+ residual (+ bias) or bias),
// activation, then the output's requantization (or INT8 code) as ``output_value`` stores it;
// float32 operations in the CPU's order, never contracted.
template <typename T, typename Z>
__device__ __forceinline__ T imma_epilogue(int acc, int col, const float* scale, const float* bias, const Z* z, const Imma& e) {
    float v = __fmul_rn(__int2float_rn(acc), scale[col]);
    if (z) {
        float add = __fmul_rn(residual_value(z[col * e.z_channel], e.zq), e.z_beta);
        if (bias) add = __fadd_rn(add, bias[col]);
        v = __fadd_rn(v, add);
    } else if (bias) {
        v = __fadd_rn(v, bias[col]);
    }
    return output_value<T>(activate(v, e.act, e.p0, e.p1), e.yq);
}

// Block (row tile, column tile) of BM x BN outputs, WARPS_M x WARPS_N warps of (BM / WARPS_M)
// x (BN / WARPS_N); a: rows x kp codes (activations), b: cols x kp codes (weights, one row per
// output channel); kp a multiple of IMMA_BK. Fragment layouts of m16n8k32 (PTX ISA): lane =
// 4 * group + quad; A: rows group and group + 8, bytes 4 * quad .. + 3 and 16 + the same;
// B: column group, the same bytes; C: rows group and group + 8, columns 2 * quad and + 1.
template <int BM, int BN, int WARPS_M, int WARPS_N, typename T, typename Z>
__device__ void imma_gemm(const signed char* a, const signed char* b, const float* scale, const float* bias, const Z* z, T* y, Imma e) {
    constexpr int THREADS = WARPS_M * WARPS_N * 32;
    constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N, MI = WM / 16, NI = WN / 8;
    __shared__ __align__(16) signed char a_tile[IMMA_STAGES][BM][IMMA_LD];
    __shared__ __align__(16) signed char b_tile[IMMA_STAGES][BN][IMMA_LD];
    const i64 m0 = (i64)blockIdx.x * BM;
    const int n0 = blockIdx.y * BN;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, group = lane >> 2, quad = lane & 3;
    const int wm = (warp / WARPS_N) * WM, wn = (warp % WARPS_N) * WN;
    int acc[MI][NI][4];
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[i][j][r] = 0;
    const int steps = e.kp / IMMA_BK;
#pragma unroll
    for (int s = 0; s < IMMA_STAGES - 1; ++s) {
        if (s < steps) {
            stage_rows<BM, THREADS>(a_tile[s], a, m0, e.rows, e.kp, s * IMMA_BK);
            stage_rows<BN, THREADS>(b_tile[s], b, n0, e.cols, e.kp, s * IMMA_BK);
        }
        copy_async_commit();
    }
    for (int step = 0; step < steps; ++step) {
        copy_async_wait<IMMA_STAGES - 2>();
        __syncthreads();  // this step's tile has landed; every warp is done with the stage refilled next
        const int next = step + IMMA_STAGES - 1;
        if (next < steps) {
            stage_rows<BM, THREADS>(a_tile[next % IMMA_STAGES], a, m0, e.rows, e.kp, next * IMMA_BK);
            stage_rows<BN, THREADS>(b_tile[next % IMMA_STAGES], b, n0, e.cols, e.kp, next * IMMA_BK);
        }
        copy_async_commit();
        const int s = step % IMMA_STAGES;
        unsigned af[MI][4], bf[NI][2];
#pragma unroll
        for (int i = 0; i < MI; ++i) {
            const signed char* p = &a_tile[s][wm + i * 16 + group][quad * 4];
            af[i][0] = *reinterpret_cast<const unsigned*>(p);
            af[i][1] = *reinterpret_cast<const unsigned*>(p + 8 * IMMA_LD);
            af[i][2] = *reinterpret_cast<const unsigned*>(p + 16);
            af[i][3] = *reinterpret_cast<const unsigned*>(p + 8 * IMMA_LD + 16);
        }
#pragma unroll
        for (int j = 0; j < NI; ++j) {
            const signed char* p = &b_tile[s][wn + j * 8 + group][quad * 4];
            bf[j][0] = *reinterpret_cast<const unsigned*>(p);
            bf[j][1] = *reinterpret_cast<const unsigned*>(p + 16);
        }
#pragma unroll
        for (int i = 0; i < MI; ++i)
#pragma unroll
            for (int j = 0; j < NI; ++j) mma_s8(acc[i][j], af[i], bf[j]);
    }
#pragma unroll
    for (int i = 0; i < MI; ++i) {
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            const i64 row = m0 + wm + i * 16 + group + half * 8;
            if (row >= e.rows) continue;
            const i64 image = row / e.spatial, position = row - image * e.spatial;
            T* out = y + image * e.cols * e.spatial + position;
            const Z* res = z ? z + image * e.z_image + position * e.z_spatial : nullptr;
#pragma unroll
            for (int j = 0; j < NI; ++j) {
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    const int col = n0 + wn + j * 8 + quad * 2 + r;
                    if (col < e.cols) out[(i64)col * e.spatial] = imma_epilogue<T, Z>(acc[i][j][half * 2 + r], col, scale, bias, res, e);
                }
            }
        }
    }
}

// The cuDNN INT8 convolutions' companions (kernels/cuda/cudnn_int8.py): a float input as the
// INT8 codes cuDNN reads, and the integer kernels' epilogue over cuDNN's int32 sums (rows x
// cols, row-major: NHWC), the residual read at row * z_image + col * z_channel.
template <typename T>
__device__ void quantize_codes(const T* x, signed char* codes, i64 n, FakeQuant q) {
    EDGE_LOOP(i, n) codes[i] = input_code(x[i], q);
}

template <typename T, typename Z>
__device__ void imma_rows_epilogue(const int* acc, const float* scale, const float* bias, const Z* z, T* y, Imma e) {
    EDGE_LOOP(i, e.rows * e.cols) {
        const i64 row = i / e.cols;
        const int col = (int)(i - row * e.cols);
        y[i] = imma_epilogue<T, Z>(acc[i], col, scale, bias, z ? z + row * e.z_image : nullptr, e);
    }
}

// Packing and quantization per input storage S/T (float32, float16, or INT8 codes).
#define EDGE_INT8_INPUT(S, T)                                                                                        \
    extern "C" __global__ void im2col_quantize_##S(const T* x, signed char* cols, Conv2d g, int kp, FakeQuant q) {  \
        im2col_quantize<T, false>(x, cols, g, kp, q);                                                                \
    }                                                                                                                \
    extern "C" __global__ void im2col_quantize_nhwc_##S(const T* x, signed char* cols, Conv2d g, int kp, FakeQuant q) { \
        im2col_quantize<T, true>(x, cols, g, kp, q);                                                                 \
    }

// GEMM and epilogue per output storage T and residual storage Z (NAME: their suffixes).
#define EDGE_INT8_OUTPUT(NAME, T, Z)                                                                                 \
    extern "C" __global__ void imma_rows_epilogue_##NAME(                                                            \
        const int* acc, const float* scale, const float* bias, const Z* z, T* y, Imma e) {                           \
        imma_rows_epilogue<T, Z>(acc, scale, bias, z, y, e);                                                         \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(256) imma_gemm_128x128_##NAME(                                      \
        const signed char* a, const signed char* b, const float* scale, const float* bias, const Z* z, T* y, Imma e) { \
        imma_gemm<128, 128, 2, 4, T, Z>(a, b, scale, bias, z, y, e);                                                 \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(128) imma_gemm_64x64_##NAME(                                        \
        const signed char* a, const signed char* b, const float* scale, const float* bias, const Z* z, T* y, Imma e) { \
        imma_gemm<64, 64, 2, 2, T, Z>(a, b, scale, bias, z, y, e);                                                   \
    }

EDGE_INT8_INPUT(f32, float)
EDGE_INT8_INPUT(f16, __half)
EDGE_INT8_INPUT(i8, signed char)

extern "C" __global__ void quantize_codes_f32(const float* x, signed char* codes, i64 n, FakeQuant q) { quantize_codes<float>(x, codes, n, q); }
extern "C" __global__ void quantize_codes_f16(const __half* x, signed char* codes, i64 n, FakeQuant q) { quantize_codes<__half>(x, codes, n, q); }

// Names: the output's storage, then the residual's where it differs (an INT8 output without
// a residual takes the "i8" kernel). INT8 codes meet float16 only: INT8 layers on the GPU
// keep their float tensors in float16 (float32 INT8 steps exist in tests, all float).
EDGE_INT8_OUTPUT(f32, float, float)
EDGE_INT8_OUTPUT(f16, __half, __half)
EDGE_INT8_OUTPUT(i8, signed char, signed char)
EDGE_INT8_OUTPUT(f16_i8, __half, signed char)
EDGE_INT8_OUTPUT(i8_f16, signed char, __half)
