/*
 * The library's C entry points, as TensorRT's loadLibrary / trtexec --dynamicPlugins expect them:
 * getCreators() lists our IPluginCreatorV3One creators, setLoggerFinder() gives us TensorRT's logger.
 * Nothing here links libnvinfer, so the library also serialises into version-compatible engines.
 */
#include "../topk_sparse_attention/topkSparseAttentionPlugin.h"
#include "pluginLogging.h"
#include "rgbirExport.h"

#include <cstdio>
#include <mutex>

namespace rgbir::plugin
{
namespace
{
std::mutex gLoggerMutex;
nvinfer1::ILoggerFinder* gLoggerFinder{nullptr};
} // namespace

void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept
{
    try
    {
        std::lock_guard<std::mutex> lock(gLoggerMutex);
        gLoggerFinder = finder;
    }
    catch (std::exception const&)
    {
        gLoggerFinder = finder; // the lock failed: a plain store is still better than no logger
    }
}

void logError(char const* message) noexcept
{
    try
    {
        std::lock_guard<std::mutex> lock(gLoggerMutex);
        nvinfer1::ILogger* logger = gLoggerFinder ? gLoggerFinder->findLogger() : nullptr;
        if (logger)
            logger->log(nvinfer1::ILogger::Severity::kERROR, message);
        else
            std::fprintf(stderr, "[rgbir plugins] %s\n", message);
    }
    catch (std::exception const&)
    {
        std::fprintf(stderr, "[rgbir plugins] %s\n", message);
    }
}

void caughtError(std::exception const& e) noexcept
{
    logError(e.what());
}
} // namespace rgbir::plugin

extern "C" RGBIR_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    rgbir::plugin::setLoggerFinder(finder);
}

extern "C" RGBIR_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    try
    {
        static rgbir::plugin::TopKSparseAttentionCreator topkSparseAttention;
        static nvinfer1::IPluginCreatorInterface* const creators[] = {&topkSparseAttention};
        nbCreators = 1;
        return creators;
    }
    catch (std::exception const& e)
    {
        rgbir::plugin::caughtError(e);
    }
    nbCreators = 0;
    return nullptr;
}
