/*
 * Symbol visibility for the library's C entry points: everything else is hidden (CMake visibility preset).
 */
#pragma once

#if defined(__GNUC__)
#define RGBIR_EXPORT __attribute__((visibility("default")))
#else
#define RGBIR_EXPORT
#endif
