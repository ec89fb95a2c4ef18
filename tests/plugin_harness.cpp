// Drives the plugin library through TensorRT's C++ plugin interfaces without TensorRT: dlopen, getCreators,
// createPlugin, IPluginV3One{Build,Runtime} calls. Prints "key value" lines for tests/test_plugins.py.
#include "NvInferRuntime.h"

#include <cstdio>
#include <cstring>
#include <dlfcn.h>
#include <vector>

using namespace nvinfer1;

namespace
{
class Logger : public ILogger
{
public:
    void log(Severity severity, AsciiChar const* message) noexcept override
    {
        std::printf("log %d %s\n", static_cast<int>(severity), message);
    }
};

class Finder : public ILoggerFinder
{
public:
    ILogger* findLogger() override { return &mLogger; }
    Logger mLogger;
};

void printFields(char const* tag, PluginFieldCollection const* fc)
{
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        PluginField const& f = fc->fields[i];
        std::printf("%s %s %d", tag, f.name, f.length);
        for (int32_t j = 0; j < f.length; ++j)
        {
            if (f.type == PluginFieldType::kINT32)
                std::printf(" %d", static_cast<int32_t const*>(f.data)[j]);
            else
                std::printf(" %g", static_cast<float const*>(f.data)[j]);
        }
        std::printf("\n");
    }
}

DynamicPluginTensorDesc desc(DataType type, int64_t n1max)
{
    DynamicPluginTensorDesc d{};
    d.desc.type = type;
    d.desc.format = TensorFormat::kLINEAR;
    d.desc.dims.nbDims = 4;
    d.min.nbDims = d.max.nbDims = d.opt.nbDims = 4;
    for (int i = 0; i < 4; ++i)
        d.desc.dims.d[i] = d.min.d[i] = d.opt.d[i] = d.max.d[i] = 1;
    d.max.d[2] = n1max;
    return d;
}
} // namespace

int main(int argc, char** argv)
{
    void* handle = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!handle)
    {
        std::printf("error dlopen %s\n", dlerror());
        return 2;
    }
    auto setFinder = reinterpret_cast<void (*)(ILoggerFinder*)>(dlsym(handle, "setLoggerFinder"));
    auto getCreators = reinterpret_cast<IPluginCreatorInterface* const* (*)(int32_t&)>(dlsym(handle, "getCreators"));
    Finder finder;
    setFinder(&finder);
    int32_t count = 0;
    IPluginCreatorInterface* const* creators = getCreators(count);
    std::printf("creators %d %s\n", count, creators[0]->getInterfaceInfo().kind);
    auto* creator = static_cast<IPluginCreatorV3One*>(creators[0]);

    float scale = 0.125f;
    int32_t divisors[3] = {2, 3, 5};
    float weights[3] = {0.2f, 0.3f, 0.5f};
    std::vector<PluginField> fields = {PluginField("scale", &scale, PluginFieldType::kFLOAT32, 1),
        PluginField("k_divisors", divisors, PluginFieldType::kINT32, 3),
        PluginField("weights", weights, PluginFieldType::kFLOAT32, 3)};
    PluginFieldCollection fc{static_cast<int32_t>(fields.size()), fields.data()};
    IPluginV3* plugin = creator->createPlugin("attention", &fc, TensorRTPhase::kBUILD);
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    PluginFieldCollection const* saved = runtime->getFieldsToSerialize();
    printFields("saved", saved);
    IPluginV3* restored = creator->createPlugin("attention", saved, TensorRTPhase::kRUNTIME);
    printFields("restored",
        static_cast<IPluginV3OneRuntime*>(restored->getCapabilityInterface(PluginCapabilityType::kRUNTIME))
            ->getFieldsToSerialize());
    IPluginV3* copy = plugin->clone();
    printFields("clone",
        static_cast<IPluginV3OneRuntime*>(copy->getCapabilityInterface(PluginCapabilityType::kRUNTIME))
            ->getFieldsToSerialize());

    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    std::printf("outputs %d\n", build->getNbOutputs());
    DataType in[3] = {DataType::kHALF, DataType::kHALF, DataType::kHALF}, out[1];
    build->getOutputDataTypes(out, 1, in, 3);
    std::printf("output_type_for_half %d\n", static_cast<int>(out[0]));
    for (DataType type : {DataType::kFLOAT, DataType::kHALF, DataType::kINT8})
    {
        DynamicPluginTensorDesc io[4] = {desc(type, 1), desc(type, 1), desc(type, 1), desc(type, 1)};
        bool all = true;
        for (int pos = 0; pos < 4; ++pos)
            all = all && build->supportsFormatCombination(pos, io, 3, 1);
        std::printf("supports %d %d\n", static_cast<int>(type), all ? 1 : 0);
    }
    DynamicPluginTensorDesc mixed[4] = {desc(DataType::kFLOAT, 1), desc(DataType::kHALF, 1),
        desc(DataType::kFLOAT, 1), desc(DataType::kFLOAT, 1)};
    std::printf("supports_mixed %d\n", build->supportsFormatCombination(1, mixed, 3, 1) ? 1 : 0);
    for (int64_t n1 : {1600, 16384})
    {
        DynamicPluginTensorDesc io[3] = {desc(DataType::kHALF, n1), desc(DataType::kHALF, n1), desc(DataType::kHALF, n1)};
        std::printf("workspace %lld %zu\n", static_cast<long long>(n1), build->getWorkspaceSize(io, 3, io, 1));
    }

    {
        DynamicPluginTensorDesc io[4] = {desc(DataType::kFLOAT, 1), desc(DataType::kFLOAT, 1),
            desc(DataType::kFLOAT, 1), desc(DataType::kFLOAT, 1)};
        int64_t shapes[3][4] = {{1, 8, 16, 16}, {1, 8, 20, 16}, {1, 8, 20, 32}};
        for (int t = 0; t < 3; ++t)
            for (int i = 0; i < 4; ++i)
                io[t].desc.dims.d[i] = shapes[t][i];
        std::printf("configure_ok %d\n", build->configurePlugin(io, 3, io + 3, 1));
        io[1].desc.dims.d[3] = 8;  // k's channels differ from q's
        std::printf("configure_mismatch %d\n", build->configurePlugin(io, 3, io + 3, 1));
    }

    std::vector<PluginField> bad = {PluginField("scale", &scale, PluginFieldType::kFLOAT32, 1),
        PluginField("k_divisors", divisors, PluginFieldType::kINT32, 0),
        PluginField("weights", weights, PluginFieldType::kFLOAT32, 0)};
    PluginFieldCollection badFc{3, bad.data()};
    std::printf("bad_plugin %s\n", creator->createPlugin("bad", &badFc, TensorRTPhase::kBUILD) ? "created" : "null");
    delete plugin;
    delete restored;
    delete copy;
    std::printf("done\n");
    return 0;
}
