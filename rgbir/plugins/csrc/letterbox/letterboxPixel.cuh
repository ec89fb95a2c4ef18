/*
 * One output pixel of the GPU letterbox (all its channels), __host__ __device__ so that the exact code the
 * kernel runs can also be checked on a CPU (tests/letterbox_harness.cu). Semantics: README.md.
 */
#pragma once

#include <cuda_fp16.h>
#include <math.h> // floorf, rintf
#include <stddef.h>
#include <stdint.h>

namespace rgbir
{

struct LetterboxGeometry
{
    int32_t srcH, srcW, srcPitch, srcC; // source frame: rows, columns, bytes per row, 1 (grey) or 3 (BGR)
    int32_t dstH, dstW, dstC;           // planar output
    int32_t resizedH, resizedW, padTop, padLeft;
    int32_t swapRB;
    float padValue, scale;
};

// OpenCV's INTER_LINEAR for 8-bit images, reproduced bit for bit: source coordinate (d + ½)·scale − ½ computed
// as OpenCV does (double, then float), the two weights rounded separately to 11-bit fixed point (2048 = 1).
// Columns clamp coordinate and weight at the borders; rows clamp only the row index (OpenCV keeps the weight).
struct Tap
{
    int32_t i0, i1;
    int32_t w0, w1;
};

__host__ __device__ inline Tap linearTap(int32_t d, double scale, int32_t size, bool clampWeight)
{
    float f = static_cast<float>((d + 0.5) * scale - 0.5);
    int32_t i = static_cast<int32_t>(floorf(f));
    f -= static_cast<float>(i);
    if (clampWeight && i < 0)
    {
        i = 0;
        f = 0.f;
    }
    if (clampWeight && i >= size - 1)
    {
        i = size - 1;
        f = 0.f;
    }
    Tap t;
    t.i0 = i < 0 ? 0 : (i > size - 1 ? size - 1 : i);
    t.i1 = i + 1 < 0 ? 0 : (i + 1 > size - 1 ? size - 1 : i + 1);
    t.w0 = static_cast<int32_t>(rintf((1.f - f) * 2048.f));
    t.w1 = static_cast<int32_t>(rintf(f * 2048.f));
    return t;
}

__host__ __device__ inline void store(float* dst, size_t at, float v)
{
    dst[at] = v;
}

__host__ __device__ inline void store(__half* dst, size_t at, float v)
{
    dst[at] = __float2half_rn(v);
}

template <typename T>
__host__ __device__ inline void letterboxPixel(uint8_t const* src, T* dst, LetterboxGeometry const& g, int32_t x,
    int32_t y)
{
    size_t const plane = static_cast<size_t>(g.dstH) * g.dstW;
    size_t const at = static_cast<size_t>(y) * g.dstW + x;
    int32_t const rx = x - g.padLeft;
    int32_t const ry = y - g.padTop;
    if (rx < 0 || ry < 0 || rx >= g.resizedW || ry >= g.resizedH)
    {
        for (int32_t c = 0; c < g.dstC; ++c)
        {
            store(dst, c * plane + at, g.padValue * g.scale);
        }
        return;
    }
    Tap const tx = linearTap(rx, static_cast<double>(g.srcW) / g.resizedW, g.srcW, true);
    Tap const ty = linearTap(ry, static_cast<double>(g.srcH) / g.resizedH, g.srcH, false);
    uint8_t const* row0 = src + static_cast<size_t>(ty.i0) * g.srcPitch;
    uint8_t const* row1 = src + static_cast<size_t>(ty.i1) * g.srcPitch;
    int32_t bgr[3] = {0, 0, 0};
    for (int32_t c = 0; c < g.srcC; ++c)
    {
        if (g.resizedW == g.srcW && g.resizedH == g.srcH)
        {
            bgr[c] = row0[rx * g.srcC + c]; // no resize: the pixel itself
            continue;
        }
        int32_t const h0 = row0[tx.i0 * g.srcC + c] * tx.w0 + row0[tx.i1 * g.srcC + c] * tx.w1;
        int32_t const h1 = row1[tx.i0 * g.srcC + c] * tx.w0 + row1[tx.i1 * g.srcC + c] * tx.w1;
        bgr[c] = (((ty.w0 * (h0 >> 4)) >> 16) + ((ty.w1 * (h1 >> 4)) >> 16) + 2) >> 2; // OpenCV's vertical pass
    }
    if (g.dstC == 1)
    {
        // grey input: a grey frame as is, a colour frame by OpenCV's 8-bit BGR2GRAY (15-bit fixed point)
        int32_t const grey = g.srcC == 1 ? bgr[0] : (3735 * bgr[0] + 19235 * bgr[1] + 9798 * bgr[2] + (1 << 14)) >> 15;
        store(dst, at, static_cast<float>(grey) * g.scale);
        return;
    }
    for (int32_t c = 0; c < 3; ++c)
    {
        int32_t const from = g.srcC == 1 ? 0 : (g.swapRB ? 2 - c : c);
        store(dst, c * plane + at, static_cast<float>(bgr[from]) * g.scale);
    }
}

} // namespace rgbir
