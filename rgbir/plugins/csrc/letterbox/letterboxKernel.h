/*
 * GPU letterbox for the TensorRT and PyTorch backends: an 8-bit camera frame (BGR or grey, HWC, pitched) → one
 * planar network input (C,H,W) in float32 or float16, resized, padded, channel-ordered and scaled in one pass.
 * Plain C launcher for ctypes. Semantics: README.md in this folder.
 */
#pragma once

#include <stdint.h>

#include "../common/rgbirExport.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes: 0 success, < 0 invalid arguments, > 0 a cudaError_t from the launch. */
#define RGBIR_LETTERBOX_OK 0
#define RGBIR_LETTERBOX_BAD_SHAPE -1
#define RGBIR_LETTERBOX_BAD_CHANNELS -2
#define RGBIR_LETTERBOX_BAD_DTYPE -3

/*
 * src: device pointer to src_h rows of src_pitch bytes, src_channels (1 or 3, BGR) uint8 per pixel.
 * dst: device pointer to dst_channels (1 or 3) planes of dst_h x dst_w, dtype 0 = float32, 1 = float16.
 * The frame is resized to resized_h x resized_w (bilinear, OpenCV's INTER_LINEAR pixel mapping) and placed at
 * (pad_top, pad_left); every other pixel is pad_value. swap_rb: write R,G,B planes from a BGR frame.
 * Every value is multiplied by scale. No allocation, no synchronisation (graph-capturable).
 */
RGBIR_EXPORT int32_t rgbirLetterboxLaunch(void const* src, int32_t src_h, int32_t src_w, int32_t src_pitch,
    int32_t src_channels, void* dst, int32_t dst_h, int32_t dst_w, int32_t dst_channels, int32_t dtype,
    int32_t resized_h, int32_t resized_w, int32_t pad_top, int32_t pad_left, int32_t swap_rb, float pad_value,
    float scale, void* stream);

#ifdef __cplusplus
}
#endif
