/*
 * Tiled top-k sparse attention: the CUDA side of topkTiledCta.cuh (context, mma.sync fragments, the kernel and
 * its launcher). Design and reasons: README.md in this folder.
 */
#include "topkSparseAttentionTiled.h"

#include "topkTiledCta.cuh"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace rgbir::topk
{
namespace
{
//! The block as topkTiledCta.cuh sees it on the GPU.
struct DeviceCtx
{
    __device__ int32_t thread() const { return static_cast<int32_t>(threadIdx.x); }
    __device__ int32_t block() const { return static_cast<int32_t>(blockIdx.x); }
    __device__ int32_t lane() const { return static_cast<int32_t>(threadIdx.x & 31u); }
    __device__ unsigned char* shared() const
    {
        extern __shared__ __align__(16) unsigned char dynamicShared[];
        return dynamicShared;
    }
    __device__ void sync() const { __syncthreads(); }
    __device__ bool syncOr(bool p) const { return __syncthreads_or(p) != 0; }
    __device__ uint32_t shflIdx(uint32_t x, int32_t src) const { return __shfl_sync(0xffffffffu, x, src); }
    __device__ uint32_t shflXor(uint32_t x, int32_t mask) const { return __shfl_xor_sync(0xffffffffu, x, mask); }
    __device__ uint32_t shflDown(uint32_t x, int32_t delta) const { return __shfl_down_sync(0xffffffffu, x, delta); }
    __device__ uint32_t ballot(bool p) const { return __ballot_sync(0xffffffffu, p); }
    __device__ uint32_t atomicAdd(uint32_t* at, uint32_t x) const { return ::atomicAdd(at, x); }
    __device__ void atomicMin(uint32_t* at, uint32_t x) const { ::atomicMin(at, x); }
    __device__ void atomicMax(uint32_t* at, uint32_t x) const { ::atomicMax(at, x); }
};

__device__ __forceinline__ uint32_t halves(__half2 h)
{
    return *reinterpret_cast<uint32_t const*>(&h);
}

__device__ __forceinline__ uint32_t load32(__half const* p) // two consecutive halves, 4-byte aligned
{
    return *reinterpret_cast<uint32_t const*>(p);
}

//! d += a (16x8 fp16, row-major) * b (8x8 fp16, column-major), fp32 accumulation; sm_75 and newer.
__device__ __forceinline__ void mma16n8k8(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t b)
{
    asm("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(b));
}
} // namespace

template <>
struct TileMath<__half>
{
    //! A fragment: q rows g, g+8 x channels 2t, 2t+1; B fragment: key g of each n-tile x the same channels.
    __device__ static void scores(float (&s)[4][4], __half const* q, int32_t qPitch, __half const* k, int32_t kPitch,
        int32_t cols, Place const& p)
    {
        __half const* q0 = q + (p.rowBase + p.g) * qPitch + 2 * p.t;
        __half const* q1 = q0 + 8 * qPitch;
        __half const* kr = k + (p.keyBase + p.g) * kPitch + 2 * p.t;
        for (int32_t c = 0; c < cols; c += 8) // channels past d are staged as zeros
        {
            uint32_t const a0 = load32(q0 + c), a1 = load32(q1 + c);
#pragma unroll
            for (int32_t nt = 0; nt < 4; ++nt)
                mma16n8k8(s[nt], a0, a1, load32(kr + nt * 8 * kPitch + c));
        }
    }

    //! The score fragment of n-tile nt is the A fragment of one k-step (keys 8 nt .. 8 nt + 7), weights in fp16.
    template <class Ctx>
    __device__ static void pv(Ctx&, float (&acc)[kVTiles][4], float const (&w)[4][4], __half const* v, int32_t vPitch,
        int32_t cols, Place const& p)
    {
        int32_t const tiles = (cols + 7) / 8;
#pragma unroll
        for (int32_t nt = 0; nt < 4; ++nt)
        {
            uint32_t const a0 = halves(__floats2half2_rn(w[nt][0], w[nt][1]));
            uint32_t const a1 = halves(__floats2half2_rn(w[nt][2], w[nt][3]));
            __half const* v0 = v + (p.keyBase + nt * 8 + 2 * p.t) * vPitch + p.g;
            __half const* v1 = v0 + vPitch;
#pragma unroll
            for (int32_t ct = 0; ct < kVTiles; ++ct)
                if (ct < tiles)
                    mma16n8k8(acc[ct], a0, a1, halves(__halves2half2(v0[ct * 8], v1[ct * 8])));
        }
    }
};

namespace
{
template <typename T>
__global__ void __launch_bounds__(64 * kMaxRowWarps, 2) topkSparseAttentionTiledKernel(TiledArgs const args)
{
    DeviceCtx ctx;
    TiledCta<T, DeviceCtx>(ctx, args).run();
}

//! What the plan depends on: opt-in shared memory per block and per SM, and the SM count (no allocation, no
//! synchronisation: fine inside CUDA-graph capture).
struct DeviceLimits
{
    int sharedPerBlock, sharedPerSM, sms;
};

cudaError_t deviceLimits(DeviceLimits& limits)
{
    int device = 0;
    cudaError_t status = cudaGetDevice(&device);
    if (status == cudaSuccess)
        status = cudaDeviceGetAttribute(&limits.sharedPerBlock, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    if (status == cudaSuccess)
        status = cudaDeviceGetAttribute(&limits.sharedPerSM, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device);
    if (status == cudaSuccess)
        status = cudaDeviceGetAttribute(&limits.sms, cudaDevAttrMultiProcessorCount, device);
    return status;
}

template <typename T>
int32_t launchTiled(TiledArgs const& args, int64_t blocks, cudaStream_t stream)
{
    auto kernel = topkSparseAttentionTiledKernel<T>;
    uint32_t const bytes = args.layout.bytes;
    cudaError_t status = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
    if (status != cudaSuccess)
        return static_cast<int32_t>(status);
    kernel<<<static_cast<unsigned>(blocks), args.layout.threads, bytes, stream>>>(args);
    return static_cast<int32_t>(cudaGetLastError());
}
} // namespace
} // namespace rgbir::topk

extern "C" int32_t rgbirTopKSparseAttentionTiledLaunch(void const* q, void const* k, void const* v, void* out,
    int32_t batch, int32_t heads, int32_t n, int32_t n1, int32_t d, int32_t dv, float scale, int32_t const* k_divisors,
    float const* weights, int32_t branches, int32_t dtype, void* /*workspace*/, size_t /*workspace_bytes*/,
    void* stream)
{
    using namespace rgbir::topk;
    TiledArgs args{q, k, v, out, n, n1, d, dv, scale, {}, 0, {}};
    int32_t const status
        = checkLaunch(batch, heads, n, n1, d, dv, k_divisors, weights, branches, dtype, true, args.branches);
    if (status != RGBIR_TOPK_OK)
        return status;
    DeviceLimits limits{};
    cudaError_t const found = deviceLimits(limits);
    if (found != cudaSuccess)
        return static_cast<int32_t>(found);
    int64_t const batchHeads = static_cast<int64_t>(batch) * heads;
    TiledPlan const plan = planTiled(
        dtype == 0 ? 4 : 2, n, n1, d, dv, batchHeads, limits.sharedPerBlock, limits.sharedPerSM, limits.sms);
    args.layout = plan.layout;
    args.tiles = (n + plan.layout.rows - 1) / (plan.layout.rows > 0 ? plan.layout.rows : 1);
    int64_t const blocks = batchHeads * args.tiles;
    if (!plan.ok || blocks > 0x7fffffff)
        return RGBIR_TOPK_BAD_SHAPE;
    auto const s = static_cast<cudaStream_t>(stream);
    return dtype == 0 ? launchTiled<float>(args, blocks, s) : launchTiled<__half>(args, blocks, s);
}
