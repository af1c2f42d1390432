
// pytest-trtctx reference conv2d kernels (NCHW, weights [K, C/groups, R, S]).

__device__ __forceinline__ float trtctx_half_to_float(unsigned short h)
{
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ unsigned short trtctx_float_to_half(float f)
{
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

__device__ __forceinline__ float trtctx_bf16_to_float(unsigned short h)
{
    return __uint_as_float(((unsigned int)h) << 16);
}

__device__ __forceinline__ unsigned short trtctx_float_to_bf16(float f)
{
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        // NaN: keep the sign and the top of the payload, force the quiet bit so that truncating
        // the low mantissa bits can never turn it into an infinity.
        return (unsigned short)((u >> 16) | 0x0040u);
    }
    // Round to nearest, ties to even; a carry out of the mantissa correctly rounds up to inf.
    u += 0x7fffu + ((u >> 16) & 1u);
    return (unsigned short)(u >> 16);
}

struct trtctx_f32 {
    typedef float storage;
    static __device__ __forceinline__ float load(float v) { return v; }
    static __device__ __forceinline__ float store(float v) { return v; }
};

struct trtctx_f16 {
    typedef unsigned short storage;
    static __device__ __forceinline__ float load(unsigned short v)
    {
        return trtctx_half_to_float(v);
    }
    static __device__ __forceinline__ unsigned short store(float v)
    {
        return trtctx_float_to_half(v);
    }
};

struct trtctx_bf16 {
    typedef unsigned short storage;
    static __device__ __forceinline__ float load(unsigned short v)
    {
        return trtctx_bf16_to_float(v);
    }
    static __device__ __forceinline__ unsigned short store(float v)
    {
        return trtctx_float_to_bf16(v);
    }
};

// y[n,k,p,q] = b[k] + sum_{c<C/groups, r<R, s<S} x[n, g*C/groups + c, ih, iw] * w[k, c, r, s]
//   with g = k / (K/groups), ih = p*stride_h - pad_h + r*dil_h, iw = q*stride_w - pad_w + s*dil_w,
//   and terms with (ih, iw) outside the input dropped (zero padding).
template <typename T>
__device__ __forceinline__ void trtctx_conv2d_body(
    const void* x_, const void* w_, const void* b_, void* y_,
    int N, int C, int H, int W, int K, int R, int S, int P, int Q,
    int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w, int groups)
{
    typedef typename T::storage elem_t;
    const elem_t* x = (const elem_t*)x_;
    const elem_t* w = (const elem_t*)w_;
    const elem_t* b = (const elem_t*)b_;
    elem_t* y = (elem_t*)y_;

    if (N <= 0 || K <= 0 || P <= 0 || Q <= 0 || groups <= 0) {
        return;
    }
    const int Cg = C / groups;  // input channels per group (= weight dim 1)
    const int Kg = K / groups;  // output channels per group
    if (Kg <= 0) {
        return;
    }
    const long long total = (long long)N * K * P * Q;
    const long long step = (long long)blockDim.x * gridDim.x;

    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += step) {
        const int q = (int)(idx % Q);
        long long t = idx / Q;
        const int p = (int)(t % P);
        t /= P;
        const int k = (int)(t % K);
        const int n = (int)(t / K);
        const int g = k / Kg;

        const int h0 = p * stride_h - pad_h;
        const int w0 = q * stride_w - pad_w;

        float acc = 0.0f;
        for (int c = 0; c < Cg; ++c) {
            const elem_t* xp = x + ((long long)n * C + (long long)g * Cg + c) * H * W;
            const elem_t* wp = w + ((long long)k * Cg + c) * R * S;
            for (int r = 0; r < R; ++r) {
                const int ih = h0 + r * dil_h;
                if (ih < 0 || ih >= H) {
                    continue;
                }
                for (int s = 0; s < S; ++s) {
                    const int iw = w0 + s * dil_w;
                    if (iw < 0 || iw >= W) {
                        continue;
                    }
                    acc += T::load(xp[(long long)ih * W + iw]) * T::load(wp[r * S + s]);
                }
            }
        }
        if (b != 0) {
            acc += T::load(b[k]);
        }
        y[idx] = T::store(acc);
    }
}

#define TRTCTX_CONV2D_KERNEL(NAME, TYPE)                                                     \
    extern "C" __global__ void NAME(                                                         \
        const void* x, const void* w, const void* b, void* y,                                \
        int N, int C, int H, int W, int K, int R, int S, int P, int Q,                       \
        int stride_h, int stride_w, int pad_h, int pad_w, int dil_h, int dil_w, int groups)  \
    {                                                                                        \
        trtctx_conv2d_body<TYPE>(x, w, b, y, N, C, H, W, K, R, S, P, Q,                      \
                                 stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups);    \
    }

TRTCTX_CONV2D_KERNEL(trtctx_conv2d_f32, trtctx_f32)
TRTCTX_CONV2D_KERNEL(trtctx_conv2d_f16, trtctx_f16)
TRTCTX_CONV2D_KERNEL(trtctx_conv2d_bf16, trtctx_bf16)

// The lazy-stall scenario's other workload: one thread polls a host-mapped flag until the host
// sets it (a persistent kernel, a producer waiting for data).
extern "C" __global__ void trtctx_poll(volatile int* flag)
{
    while (*flag == 0) { }
}
