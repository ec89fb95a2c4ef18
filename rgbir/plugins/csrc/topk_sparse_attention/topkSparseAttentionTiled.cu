/*
 * Tiled top-k sparse attention: the CUDA side of topkTiledCta.cuh (the context, whose mma16n8k8 is mma.sync, the
 * kernel and its launcher). Design and reasons: README.md in this folder.
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
    //! d += a (16x8 fp16, row-major) * b (8x8 fp16, column-major), fp32 accumulation; sm_75 and newer.
    __device__ void mma16n8k8(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t b) const
    {
        asm("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a0), "r"(a1), "r"(b));
    }
};

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
