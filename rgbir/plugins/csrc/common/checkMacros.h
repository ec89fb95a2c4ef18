/*
 * Argument checks inside the plugins' noexcept methods, as TensorRT's own plugins do them: RGBIR_VALIDATE throws a
 * PluginError, the method's try/catch hands it to caughtError() (pluginLogging.h) and returns its failure value, so
 * no exception ever crosses into TensorRT.
 */
#pragma once

#include <stdexcept>
#include <string>

namespace rgbir::plugin
{
class PluginError : public std::runtime_error
{
public:
    using std::runtime_error::runtime_error;
};
} // namespace rgbir::plugin

//! Throws rgbir::plugin::PluginError(message) unless `condition` holds; `message` may be a std::string expression.
#define RGBIR_VALIDATE(condition, message)                                                                             \
    do                                                                                                                 \
    {                                                                                                                  \
        if (!(condition))                                                                                              \
            throw ::rgbir::plugin::PluginError(message);                                                               \
    } while (0)
