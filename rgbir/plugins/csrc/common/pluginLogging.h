/*
 * Logging for a plugin library loaded without libnvinfer: TensorRT hands us its logger through
 * setLoggerFinder(); messages go there (or to stderr before that happens). Nothing here throws.
 */
#pragma once

#include "NvInferRuntime.h"

#include <exception>

namespace rgbir::plugin
{
void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept;
void logError(char const* message) noexcept;

//! Reports an exception caught at the TensorRT boundary (a noexcept plugin method) as an error.
void caughtError(std::exception const& e) noexcept;
} // namespace rgbir::plugin
