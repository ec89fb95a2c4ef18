/*
 * GPU letterbox: one thread per output pixel computes every output channel. Semantics: README.md.
 */
#include "letterboxKernel.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace
{

// OpenCV INTER_LINEAR source coordinate: half-pixel centres, clamped to the border.
__device__ inline void sourceCoordinate(int32_t d, float ratio, int32_t size, int32_t& i0, int32_t& i1, float& f)
{
    float const s = (static_cast<float>(d) + 0.5f) * ratio - 0.5f;
    int32_t i = static_cast<int32_t>(floorf(s));
    f = s - static_cast<float>(i);
    if (i < 0)
    {
        i = 0;
        f = 0.f;
    }
    if (i >= size - 1)
    {
        i = size - 1;
        f = 0.f;
    }
    i0 = i;
    i1 = min(i + 1, size - 1);
}

template <typename T>
__device__ inline T fromFloat(float v);
template <>
__device__ inline float fromFloat<float>(float v)
{
    return v;
}
template <>
__device__ inline __half fromFloat<__half>(float v)
{
    return __float2half_rn(v);
}

template <typename T>
__global__ void letterboxKernel(uint8_t const* src, int32_t srcH, int32_t srcW, int32_t srcPitch, int32_t srcC,
    T* dst, int32_t dstH, int32_t dstW, int32_t dstC, int32_t resizedH, int32_t resizedW, int32_t padTop,
    int32_t padLeft, int32_t swapRB, float padValue, float scale)
{
    int32_t const x = blockIdx.x * blockDim.x + threadIdx.x;
    int32_t const y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dstW || y >= dstH)
    {
        return;
    }
    size_t const plane = static_cast<size_t>(dstH) * dstW;
    size_t const at = static_cast<size_t>(y) * dstW + x;
    int32_t const rx = x - padLeft;
    int32_t const ry = y - padTop;
    if (rx < 0 || ry < 0 || rx >= resizedW || ry >= resizedH)
    {
        for (int32_t c = 0; c < dstC; ++c)
        {
            dst[c * plane + at] = fromFloat<T>(padValue * scale);
        }
        return;
    }
    int32_t x0, x1, y0, y1;
    float fx, fy;
    sourceCoordinate(rx, static_cast<float>(srcW) / resizedW, srcW, x0, x1, fx);
    sourceCoordinate(ry, static_cast<float>(srcH) / resizedH, srcH, y0, y1, fy);
    uint8_t const* row0 = src + static_cast<size_t>(y0) * srcPitch;
    uint8_t const* row1 = src + static_cast<size_t>(y1) * srcPitch;
    float bgr[3];
    for (int32_t c = 0; c < srcC; ++c)
    {
        float const top = row0[x0 * srcC + c] * (1.f - fx) + row0[x1 * srcC + c] * fx;
        float const bottom = row1[x0 * srcC + c] * (1.f - fx) + row1[x1 * srcC + c] * fx;
        bgr[c] = rintf(top * (1.f - fy) + bottom * fy); // an 8-bit resized frame, as OpenCV's
    }
    if (dstC == 1)
    {
        // grey input: a grey frame as is, a colour frame by OpenCV's BGR2GRAY weights
        float const grey = srcC == 1 ? bgr[0] : rintf(0.114f * bgr[0] + 0.587f * bgr[1] + 0.299f * bgr[2]);
        dst[at] = fromFloat<T>(grey * scale);
        return;
    }
    for (int32_t c = 0; c < 3; ++c)
    {
        int32_t const from = srcC == 1 ? 0 : (swapRB ? 2 - c : c);
        dst[c * plane + at] = fromFloat<T>(bgr[from] * scale);
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
    dim3 const block(32, 8);
    dim3 const grid((dst_w + block.x - 1) / block.x, (dst_h + block.y - 1) / block.y);
    auto const s = static_cast<cudaStream_t>(stream);
    auto const in = static_cast<uint8_t const*>(src);
    if (dtype == 0)
    {
        letterboxKernel<float><<<grid, block, 0, s>>>(in, src_h, src_w, src_pitch, src_channels,
            static_cast<float*>(dst), dst_h, dst_w, dst_channels, resized_h, resized_w, pad_top, pad_left, swap_rb,
            pad_value, scale);
    }
    else if (dtype == 1)
    {
        letterboxKernel<__half><<<grid, block, 0, s>>>(in, src_h, src_w, src_pitch, src_channels,
            static_cast<__half*>(dst), dst_h, dst_w, dst_channels, resized_h, resized_w, pad_top, pad_left, swap_rb,
            pad_value, scale);
    }
    else
    {
        return RGBIR_LETTERBOX_BAD_DTYPE;
    }
    return static_cast<int32_t>(cudaGetLastError());
}
