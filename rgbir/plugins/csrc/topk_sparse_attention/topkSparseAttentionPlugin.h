/*
 * TensorRT IPluginV3 for rgbir::TopKSparseAttention (name "TopKSparseAttention", namespace "rgbir",
 * version "1"). Inputs q (B,H,N,D), k (B,H,N1,D), v (B,H,N1,DV); output (B,H,N,DV); FP32 or FP16, linear.
 * Fields (= the ONNX node's attributes): scale FLOAT32, k_divisors INT32[], weights FLOAT32[].
 * Every noexcept method that does work catches everything, logs it and returns its failure value (-1, nullptr,
 * false or 0): no exception reaches TensorRT.
 */
#pragma once

#include "NvInferRuntime.h"

#include <string>
#include <vector>

namespace rgbir::plugin
{
constexpr char const* kTopKName = "TopKSparseAttention";
constexpr char const* kTopKVersion = "1";
constexpr char const* kTopKNamespace = "rgbir";

// Tensor indices: inputs, then the output (inOut arrays put it after the inputs).
constexpr int32_t kQ = 0;
constexpr int32_t kK = 1;
constexpr int32_t kV = 2;
constexpr int32_t kOUT = 0;
constexpr int32_t kNB_INPUTS = 3;
constexpr int32_t kNB_OUTPUTS = 1;

//! The plugin's fields, one table for the creator's field names, serialisation and parsing.
enum class TopKField : int32_t
{
    kSCALE,
    kK_DIVISORS,
    kWEIGHTS,
};

struct TopKFieldSpec
{
    TopKField id;
    char const* name;
    nvinfer1::PluginFieldType type;
    bool list; //!< INT32[] / FLOAT32[] (the creator advertises length 0) rather than one value
};

constexpr TopKFieldSpec kTopKFields[] = {
    {TopKField::kSCALE, "scale", nvinfer1::PluginFieldType::kFLOAT32, false},
    {TopKField::kK_DIVISORS, "k_divisors", nvinfer1::PluginFieldType::kINT32, true},
    {TopKField::kWEIGHTS, "weights", nvinfer1::PluginFieldType::kFLOAT32, true},
};

struct TopKAttributes
{
    float scale{1.f};
    std::vector<int32_t> kDivisors;
    std::vector<float> weights;

    //! Empty when valid, else the reason (the creator then logs it and returns nullptr).
    std::string validate() const;
    //! This attribute as a PluginField pointing into *this.
    nvinfer1::PluginField field(TopKFieldSpec const& spec);
    //! Reads `f` into the attribute `spec` names; false when its type or data does not fit.
    bool read(TopKFieldSpec const& spec, nvinfer1::PluginField const& f);
};

class TopKSparseAttentionPlugin : public nvinfer1::IPluginV3,
                                  public nvinfer1::IPluginV3OneCore,
                                  public nvinfer1::IPluginV3OneBuild,
                                  public nvinfer1::IPluginV3OneRuntime
{
public:
    explicit TopKSparseAttentionPlugin(TopKAttributes attributes);

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override { return kTopKName; }
    char const* getPluginVersion() const noexcept override { return kTopKVersion; }
    char const* getPluginNamespace() const noexcept override { return kTopKNamespace; }

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs, nvinfer1::DataType const* inputTypes,
        int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t getNbOutputs() const noexcept override { return kNB_OUTPUTS; }
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    TopKAttributes mAttributes;
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

class TopKSparseAttentionCreator : public nvinfer1::IPluginCreatorV3One
{
public:
    TopKSparseAttentionCreator();

    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override { return &mFieldCollection; }
    char const* getPluginName() const noexcept override { return kTopKName; }
    char const* getPluginVersion() const noexcept override { return kTopKVersion; }
    char const* getPluginNamespace() const noexcept override { return kTopKNamespace; }

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};
} // namespace rgbir::plugin
