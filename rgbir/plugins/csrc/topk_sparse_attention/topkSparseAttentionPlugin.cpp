/*
 * rgbir::TopKSparseAttention as a TensorRT IPluginV3: shape and type rules, the field table, enqueue through the C
 * launcher. Semantics: README.md in this folder.
 */
#include "topkSparseAttentionPlugin.h"

#include "../common/checkMacros.h"
#include "../common/pluginLogging.h"
#include "topkSparseAttentionKernel.h"
#include "topkSparseAttentionTiled.h"

#include <cstring>
#include <exception>

using namespace nvinfer1;

namespace rgbir::plugin
{
namespace
{
//! The kernel enqueue runs. false: the current, GPU-validated kernel. true: the tiled kernel (no workspace), once
//! benchmarks/gpu_check.sh has passed on a GPU (README.md in this folder, "Tiled kernel").
constexpr bool kTiledKernel = false;

bool isFloatType(DataType t)
{
    return t == DataType::kFLOAT || t == DataType::kHALF;
}

//! Workspace bytes enqueue passes to the kernel for n1 keys.
size_t workspaceBytes(int64_t n1)
{
    return kTiledKernel ? 0 : rgbirTopKSparseAttentionWorkspaceSize(static_cast<int32_t>(n1));
}

TopKFieldSpec const* findField(char const* name)
{
    for (TopKFieldSpec const& spec : kTopKFields)
        if (!std::strcmp(spec.name, name))
            return &spec;
    return nullptr;
}

void requireTensors(int32_t nbInputs, int32_t nbOutputs)
{
    RGBIR_VALIDATE(nbInputs == kNB_INPUTS && nbOutputs == kNB_OUTPUTS,
        "TopKSparseAttention: expected 3 inputs (q, k, v) and 1 output, got " + std::to_string(nbInputs) + " and "
            + std::to_string(nbOutputs));
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

PluginField TopKAttributes::field(TopKFieldSpec const& spec)
{
    switch (spec.id)
    {
    case TopKField::kSCALE: return PluginField(spec.name, &scale, spec.type, 1);
    case TopKField::kK_DIVISORS:
        return PluginField(spec.name, kDivisors.data(), spec.type, static_cast<int32_t>(kDivisors.size()));
    case TopKField::kWEIGHTS:
        return PluginField(spec.name, weights.data(), spec.type, static_cast<int32_t>(weights.size()));
    }
    throw PluginError("TopKSparseAttention: unknown field");
}

bool TopKAttributes::read(TopKFieldSpec const& spec, PluginField const& f)
{
    if (f.type != spec.type || !f.data || f.length < (spec.list ? 0 : 1))
        return false;
    switch (spec.id)
    {
    case TopKField::kSCALE: scale = *static_cast<float const*>(f.data); return true;
    case TopKField::kK_DIVISORS:
    {
        auto const* d = static_cast<int32_t const*>(f.data);
        kDivisors.assign(d, d + f.length);
        return true;
    }
    case TopKField::kWEIGHTS:
    {
        auto const* w = static_cast<float const*>(f.data);
        weights.assign(w, w + f.length);
        return true;
    }
    }
    return false;
}

TopKSparseAttentionPlugin::TopKSparseAttentionPlugin(TopKAttributes attributes)
    : mAttributes(std::move(attributes))
{
}

IPluginCapability* TopKSparseAttentionPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    try
    {
        switch (type)
        {
        case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
        case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
        case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
        }
        RGBIR_VALIDATE(false, "TopKSparseAttention: unknown capability type");
    }
    catch (std::exception const& e)
    {
        caughtError(e);
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
        caughtError(e);
    }
    return nullptr;
}

int32_t TopKSparseAttentionPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    try
    {
        requireTensors(nbInputs, nbOutputs);
        RGBIR_VALIDATE(in && out, "TopKSparseAttention: configurePlugin without tensor descriptions");
        Dims const& q = in[kQ].desc.dims;
        Dims const& k = in[kK].desc.dims;
        Dims const& v = in[kV].desc.dims;
        RGBIR_VALIDATE(q.nbDims == 4 && k.nbDims == 4 && v.nbDims == 4,
            "TopKSparseAttention: q, k and v must be 4-D (batch, heads, tokens, channels)");
        // -1 marks a dimension unknown until run time; check what is known
        auto differ = [](int64_t a, int64_t b) { return a >= 0 && b >= 0 && a != b; };
        bool const bad = differ(q.d[0], k.d[0]) || differ(q.d[0], v.d[0]) || differ(q.d[1], k.d[1])
            || differ(q.d[1], v.d[1]) || differ(q.d[3], k.d[3]) || differ(k.d[2], v.d[2])
            || q.d[3] > RGBIR_TOPK_MAX_HEAD_DIM || v.d[3] > RGBIR_TOPK_MAX_HEAD_DIM;
        RGBIR_VALIDATE(!bad, "TopKSparseAttention: need q (B,H,N,D), k (B,H,N1,D), v (B,H,N1,DV) with D, DV <= 256");
        return 0;
    }
    catch (std::exception const& e)
    {
        caughtError(e);
    }
    return -1;
}

int32_t TopKSparseAttentionPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    try
    {
        requireTensors(nbInputs, nbOutputs);
        RGBIR_VALIDATE(outputTypes && inputTypes, "TopKSparseAttention: getOutputDataTypes without types");
        outputTypes[kOUT] = inputTypes[kQ];
        return 0;
    }
    catch (std::exception const& e)
    {
        caughtError(e);
    }
    return -1;
}

int32_t TopKSparseAttentionPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs,
    DimsExprs const* shapeInputs, int32_t nbShapeInputs, DimsExprs* outputs, int32_t nbOutputs,
    IExprBuilder& exprBuilder) noexcept
{
    try
    {
        requireTensors(nbInputs, nbOutputs);
        RGBIR_VALIDATE(inputs && outputs && inputs[kQ].nbDims == 4 && inputs[kV].nbDims == 4,
            "TopKSparseAttention: q and v must be 4-D");
        outputs[kOUT] = inputs[kQ];           // (B, H, N, ·)
        outputs[kOUT].d[3] = inputs[kV].d[3]; // · DV from v
        return 0;
    }
    catch (std::exception const& e)
    {
        caughtError(e);
    }
    return -1;
}

bool TopKSparseAttentionPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    try
    {
        requireTensors(nbInputs, nbOutputs);
        RGBIR_VALIDATE(inOut && pos >= 0 && pos < kNB_INPUTS + kNB_OUTPUTS,
            "TopKSparseAttention: supportsFormatCombination position out of range");
        PluginTensorDesc const& desc = inOut[pos].desc;
        if (desc.format != TensorFormat::kLINEAR || !isFloatType(desc.type))
            return false;
        return pos == kQ || desc.type == inOut[kQ].desc.type; // every tensor has q's type
    }
    catch (std::exception const& e)
    {
        caughtError(e);
    }
    return false;
}

size_t TopKSparseAttentionPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept
{
    try
    {
        requireTensors(nbInputs, nbOutputs);
        RGBIR_VALIDATE(inputs, "TopKSparseAttention: getWorkspaceSize without tensor descriptions");
        return workspaceBytes(inputs[kK].max.d[2]);
    }
    catch (std::exception const& e)
    {
        caughtError(e);
    }
    return 0;
}

int32_t TopKSparseAttentionPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    try
    {
        requireTensors(nbInputs, nbOutputs);
        RGBIR_VALIDATE(in && in[kQ].dims.nbDims == 4, "TopKSparseAttention: q must be 4-D");
        return 0;
    }
    catch (std::exception const& e)
    {
        caughtError(e);
    }
    return -1;
}

int32_t TopKSparseAttentionPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    try
    {
        RGBIR_VALIDATE(inputDesc && inputs && outputs, "TopKSparseAttention: enqueue without tensors");
        Dims const& q = inputDesc[kQ].dims;
        Dims const& k = inputDesc[kK].dims;
        Dims const& v = inputDesc[kV].dims;
        int32_t const dtype = inputDesc[kQ].type == DataType::kHALF ? 1 : 0;
        auto const launch = kTiledKernel ? rgbirTopKSparseAttentionTiledLaunch : rgbirTopKSparseAttentionLaunch;
        int32_t const status = launch(inputs[kQ], inputs[kK], inputs[kV], outputs[kOUT], static_cast<int32_t>(q.d[0]),
            static_cast<int32_t>(q.d[1]), static_cast<int32_t>(q.d[2]), static_cast<int32_t>(k.d[2]),
            static_cast<int32_t>(q.d[3]), static_cast<int32_t>(v.d[3]), mAttributes.scale, mAttributes.kDivisors.data(),
            mAttributes.weights.data(), static_cast<int32_t>(mAttributes.kDivisors.size()), dtype, workspace,
            workspaceBytes(k.d[2]), stream);
        if (status != RGBIR_TOPK_OK)
            logError(("TopKSparseAttention enqueue failed with status " + std::to_string(status)).c_str());
        return status;
    }
    catch (std::exception const& e)
    {
        caughtError(e);
    }
    return -1;
}

IPluginV3* TopKSparseAttentionPlugin::attachToContext(IPluginResourceContext* context) noexcept
{
    return clone(); // noexcept itself: logs and returns nullptr on failure
}

PluginFieldCollection const* TopKSparseAttentionPlugin::getFieldsToSerialize() noexcept
{
    try
    {
        mFields.clear();
        for (TopKFieldSpec const& spec : kTopKFields)
            mFields.push_back(mAttributes.field(spec));
        mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
        mFieldCollection.fields = mFields.data();
        return &mFieldCollection;
    }
    catch (std::exception const& e)
    {
        caughtError(e);
    }
    return nullptr;
}

TopKSparseAttentionCreator::TopKSparseAttentionCreator()
{
    for (TopKFieldSpec const& spec : kTopKFields)
        mFields.emplace_back(spec.name, nullptr, spec.type, spec.list ? 0 : 1);
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
            TopKFieldSpec const* spec = f.name ? findField(f.name) : nullptr; // others are ignored
            if (spec && attributes.read(*spec, f))
                haveScale = haveScale || spec->id == TopKField::kSCALE;
        }
        std::string const problem = haveScale ? attributes.validate() : "the scale field is missing";
        RGBIR_VALIDATE(problem.empty(), "TopKSparseAttention '" + std::string(name ? name : "") + "': " + problem);
        return new TopKSparseAttentionPlugin(std::move(attributes));
    }
    catch (std::exception const& e)
    {
        caughtError(e);
    }
    return nullptr;
}
} // namespace rgbir::plugin
