/*
 * The library's C entry points, as TensorRT's loadLibrary / trtexec --dynamicPlugins expect them:
 * getCreators() lists our IPluginCreatorV3One creators, setLoggerFinder() gives us TensorRT's logger.
 * Nothing here links libnvinfer, so the library also serialises into version-compatible engines.
 */
#include "pluginLogging.h"
#include "../topk_sparse_attention/topkSparseAttentionPlugin.h"

#include <cstdio>
#include <mutex>

namespace rgbir::plugin
{
namespace
{
std::mutex gLoggerMutex;
nvinfer1::ILoggerFinder* gLoggerFinder{nullptr};
} // namespace

void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    std::lock_guard<std::mutex> lock(gLoggerMutex);
    gLoggerFinder = finder;
}

void logError(char const* message)
{
    std::lock_guard<std::mutex> lock(gLoggerMutex);
    nvinfer1::ILogger* logger = gLoggerFinder ? gLoggerFinder->findLogger() : nullptr;
    if (logger)
        logger->log(nvinfer1::ILogger::Severity::kERROR, message);
    else
        std::fprintf(stderr, "[rgbir plugins] %s\n", message);
}
} // namespace rgbir::plugin

extern "C" __attribute__((visibility("default"))) void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    rgbir::plugin::setLoggerFinder(finder);
}

extern "C" __attribute__((visibility("default"))) nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static rgbir::plugin::TopKSparseAttentionCreator topkSparseAttention;
    static nvinfer1::IPluginCreatorInterface* const creators[] = {&topkSparseAttention};
    nbCreators = 1;
    return creators;
}
