/*
 * Logging for a plugin library loaded without libnvinfer: TensorRT hands us its logger through
 * setLoggerFinder(); messages go there (or to stderr before that happens).
 */
#pragma once

#include "NvInferRuntime.h"

namespace rgbir::plugin
{
void setLoggerFinder(nvinfer1::ILoggerFinder* finder);
void logError(char const* message);
} // namespace rgbir::plugin
