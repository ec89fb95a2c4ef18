#include "topkSparseAttentionPlugin.h"

#include "../common/pluginLogging.h"
#include "topkSparseAttentionKernel.h"

#include <cstring>
#include <exception>

using namespace nvinfer1;

namespace rgbir::plugin
{
namespace
{
constexpr int32_t kInputs = 3;

bool isFloatType(DataType t)
{
    return t == DataType::kFLOAT || t == DataType::kHALF;
}
} // namespace

std::string TopKAttributes::validate() const
{
    if (kDivisors.empty())
        return "k_divisors is empty: give one divisor per branch";
    if (kDivisors.size() > RGBIR_TOPK_MAX_BRANCHES)
        return "more than " + std::to_string(RGBIR_TOPK_MAX_BRANCHES) + " branches";
    if (weights.size() != kDivisors.size())
        return "weights has " + std::to_string(weights.size()) + " entries but k_divisors has "
            + std::to_string(kDivisors.size());
    for (int32_t d : kDivisors)
        if (d < 1)
            return "k_divisors entries must be >= 1, got " + std::to_string(d);
    return {};
}

TopKSparseAttentionPlugin::TopKSparseAttentionPlugin(TopKAttributes attributes)
    : mAttributes(std::move(attributes))
{
}

IPluginCapability* TopKSparseAttentionPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

IPluginV3* TopKSparseAttentionPlugin::clone() noexcept
{
    try
    {
        return new TopKSparseAttentionPlugin(mAttributes);
    }
    catch (std::exception const& e)
    {
        logError(e.what());
        return nullptr;
    }
}

int32_t TopKSparseAttentionPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    if (nbInputs != kInputs || nbOutputs != 1)
        return -1;
    Dims const& q = in[0].desc.dims;
    Dims const& k = in[1].desc.dims;
    Dims const& v = in[2].desc.dims;
    if (q.nbDims != 4 || k.nbDims != 4 || v.nbDims != 4)
    {
        logError("TopKSparseAttention: q, k and v must be 4-D (batch, heads, tokens, channels)");
        return -1;
    }
    // -1 marks a dimension unknown until run time; check what is known
    auto differ = [](int64_t a, int64_t b) { return a >= 0 && b >= 0 && a != b; };
    bool const bad = differ(q.d[0], k.d[0]) || differ(q.d[0], v.d[0]) || differ(q.d[1], k.d[1])
        || differ(q.d[1], v.d[1]) || differ(q.d[3], k.d[3]) || differ(k.d[2], v.d[2])
        || q.d[3] > RGBIR_TOPK_MAX_HEAD_DIM || v.d[3] > RGBIR_TOPK_MAX_HEAD_DIM;
    if (bad)
    {
        logError("TopKSparseAttention: need q (B,H,N,D), k (B,H,N1,D), v (B,H,N1,DV) with D, DV <= 256");
        return -1;
    }
    return 0;
}

int32_t TopKSparseAttentionPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (nbOutputs != 1 || nbInputs != kInputs)
        return -1;
    outputTypes[0] = inputTypes[0];
    return 0;
}

int32_t TopKSparseAttentionPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs,
    DimsExprs const* shapeInputs, int32_t nbShapeInputs, DimsExprs* outputs, int32_t nbOutputs,
    IExprBuilder& exprBuilder) noexcept
{
    if (nbInputs != kInputs || nbOutputs != 1 || inputs[0].nbDims != 4 || inputs[2].nbDims != 4)
        return -1;
    outputs[0] = inputs[0];            // (B, H, N, ·)
    outputs[0].d[3] = inputs[2].d[3];  // · DV from v
    return 0;
}

bool TopKSparseAttentionPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    PluginTensorDesc const& desc = inOut[pos].desc;
    if (desc.format != TensorFormat::kLINEAR || !isFloatType(desc.type))
        return false;
    return pos == 0 || desc.type == inOut[0].desc.type;  // every tensor has q's type
}

size_t TopKSparseAttentionPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept
{
    return rgbirTopKSparseAttentionWorkspaceSize(static_cast<int32_t>(inputs[1].max.d[2]));
}

int32_t TopKSparseAttentionPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    return nbInputs == kInputs && nbOutputs == 1 && in[0].dims.nbDims == 4 ? 0 : -1;
}

int32_t TopKSparseAttentionPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    Dims const& q = inputDesc[0].dims;
    Dims const& k = inputDesc[1].dims;
    Dims const& v = inputDesc[2].dims;
    int32_t const dtype = inputDesc[0].type == DataType::kHALF ? 1 : 0;
    size_t const workspaceBytes = rgbirTopKSparseAttentionWorkspaceSize(static_cast<int32_t>(k.d[2]));
    int32_t const status = rgbirTopKSparseAttentionLaunch(inputs[0], inputs[1], inputs[2], outputs[0],
        static_cast<int32_t>(q.d[0]), static_cast<int32_t>(q.d[1]), static_cast<int32_t>(q.d[2]),
        static_cast<int32_t>(k.d[2]), static_cast<int32_t>(q.d[3]), static_cast<int32_t>(v.d[3]), mAttributes.scale,
        mAttributes.kDivisors.data(), mAttributes.weights.data(), static_cast<int32_t>(mAttributes.kDivisors.size()),
        dtype, workspace, workspaceBytes, stream);
    if (status != RGBIR_TOPK_OK)
        logError(("TopKSparseAttention enqueue failed with status " + std::to_string(status)).c_str());
    return status;
}

IPluginV3* TopKSparseAttentionPlugin::attachToContext(IPluginResourceContext* context) noexcept
{
    return clone();
}

PluginFieldCollection const* TopKSparseAttentionPlugin::getFieldsToSerialize() noexcept
{
    mFields = {
        PluginField("scale", &mAttributes.scale, PluginFieldType::kFLOAT32, 1),
        PluginField("k_divisors", mAttributes.kDivisors.data(), PluginFieldType::kINT32,
            static_cast<int32_t>(mAttributes.kDivisors.size())),
        PluginField("weights", mAttributes.weights.data(), PluginFieldType::kFLOAT32,
            static_cast<int32_t>(mAttributes.weights.size())),
    };
    mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
    mFieldCollection.fields = mFields.data();
    return &mFieldCollection;
}

TopKSparseAttentionCreator::TopKSparseAttentionCreator()
{
    mFields = {
        PluginField("scale", nullptr, PluginFieldType::kFLOAT32, 1),
        PluginField("k_divisors", nullptr, PluginFieldType::kINT32, 0),
        PluginField("weights", nullptr, PluginFieldType::kFLOAT32, 0),
    };
    mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
    mFieldCollection.fields = mFields.data();
}

IPluginV3* TopKSparseAttentionCreator::createPlugin(
    char const* name, PluginFieldCollection const* fc, TensorRTPhase phase) noexcept
{
    try
    {
        TopKAttributes attributes;
        bool haveScale = false;
        for (int32_t i = 0; fc && i < fc->nbFields; ++i)
        {
            PluginField const& f = fc->fields[i];
            if (!f.name)
                continue;
            if (!std::strcmp(f.name, "scale") && f.type == PluginFieldType::kFLOAT32 && f.length >= 1 && f.data)
            {
                attributes.scale = *static_cast<float const*>(f.data);
                haveScale = true;
            }
            else if (!std::strcmp(f.name, "k_divisors") && f.type == PluginFieldType::kINT32 && f.data)
            {
                auto const* d = static_cast<int32_t const*>(f.data);
                attributes.kDivisors.assign(d, d + f.length);
            }
            else if (!std::strcmp(f.name, "weights") && f.type == PluginFieldType::kFLOAT32 && f.data)
            {
                auto const* w = static_cast<float const*>(f.data);
                attributes.weights.assign(w, w + f.length);
            }
        }
        std::string problem = haveScale ? attributes.validate() : "the scale field is missing";
        if (!problem.empty())
        {
            logError(("TopKSparseAttention '" + std::string(name ? name : "") + "': " + problem).c_str());
            return nullptr;
        }
        return new TopKSparseAttentionPlugin(std::move(attributes));
    }
    catch (std::exception const& e)
    {
        logError(e.what());
        return nullptr;
    }
}
} // namespace rgbir::plugin
