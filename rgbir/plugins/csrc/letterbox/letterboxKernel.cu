/*
 * GPU letterbox: one thread per output pixel computes every output channel (letterboxPixel.cuh).
 * Semantics: README.md.
 */
#include "letterboxKernel.h"
#include "letterboxPixel.cuh"

#include <cuda_runtime.h>

namespace
{

template <typename T>
__global__ void letterboxKernel(uint8_t const* src, T* dst, rgbir::LetterboxGeometry const g)
{
    int32_t const x = blockIdx.x * blockDim.x + threadIdx.x;
    int32_t const y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x < g.dstW && y < g.dstH)
    {
        rgbir::letterboxPixel(src, dst, g, x, y);
    }
}

} // namespace

extern "C" int32_t rgbirLetterboxLaunch(void const* src, int32_t src_h, int32_t src_w, int32_t src_pitch,
    int32_t src_channels, void* dst, int32_t dst_h, int32_t dst_w, int32_t dst_channels, int32_t dtype,
    int32_t resized_h, int32_t resized_w, int32_t pad_top, int32_t pad_left, int32_t swap_rb, float pad_value,
    float scale, void* stream)
{
    if ((src_channels != 1 && src_channels != 3) || (dst_channels != 1 && dst_channels != 3))
    {
        return RGBIR_LETTERBOX_BAD_CHANNELS;
    }
    if (src_h < 1 || src_w < 1 || dst_h < 1 || dst_w < 1 || resized_h < 1 || resized_w < 1 || pad_top < 0
        || pad_left < 0 || pad_top + resized_h > dst_h || pad_left + resized_w > dst_w
        || src_pitch < src_w * src_channels)
    {
        return RGBIR_LETTERBOX_BAD_SHAPE;
    }
    if (dtype != 0 && dtype != 1)
    {
        return RGBIR_LETTERBOX_BAD_DTYPE;
    }
    rgbir::LetterboxGeometry const g{src_h, src_w, src_pitch, src_channels, dst_h, dst_w, dst_channels, resized_h,
        resized_w, pad_top, pad_left, swap_rb, pad_value, scale};
    dim3 const block(32, 8);
    dim3 const grid((dst_w + block.x - 1) / block.x, (dst_h + block.y - 1) / block.y);
    auto const s = static_cast<cudaStream_t>(stream);
    auto const in = static_cast<uint8_t const*>(src);
    if (dtype == 0)
    {
        letterboxKernel<float><<<grid, block, 0, s>>>(in, static_cast<float*>(dst), g);
    }
    else
    {
        letterboxKernel<__half><<<grid, block, 0, s>>>(in, static_cast<__half*>(dst), g);
    }
    return static_cast<int32_t>(cudaGetLastError());
}
