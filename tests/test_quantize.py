"""INT8 for TensorRT 11: ``rgbir quantize`` (ORT's QDQ quantizer, paired RGB + IR calibration) keeps the demo
model's accuracy, places symmetric Q/DQ the way TensorRT fuses it, leaves the attention plugin, softmaxes,
LayerNorms, DFL and box decoding in float; ``rgbir check`` flags the Q/DQ patterns TensorRT rejects; ``rgbir
build`` takes the Q/DQ model as it is on TensorRT 10 and 11."""

import json

import cv2
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import fake_tensorrt
from attention_onnx import metadata, small_onnx
from rgbir.cli import main
from rgbir.cli.demo import DEMO_WEIGHTS
from rgbir.errors import RgbirError
from rgbir.export.check import check_onnx
from rgbir.export.graph import quantized_inputs
from rgbir.metadata import onnx_metadata
from rgbir.ops import TOPK_SPARSE_ATTENTION as OP
from rgbir.trt import EngineOptions, TensorRTFeatures, plan_build
from test_build import GPU
from test_check import save, value

demo = pytest.mark.skipif(not DEMO_WEIGHTS.is_file(), reason="the demo weights are not in this checkout")


# the demo model, exported once (conftest.py's demo_fp32, on its synthetic scenes) and quantized once ------------
@pytest.fixture(scope="session")
def int8(demo_fp32, synthetic):
    """The INT8 model (percentile, 32 pairs) and its activation ranges, which later tests reuse."""
    from rgbir.export.quantize import QuantizeOptions, quantize_onnx

    options = QuantizeOptions(str(synthetic), calibration_images=32,
                              calibration_cache=demo_fp32.with_name("ranges.json"))
    return quantize_onnx(demo_fp32, demo_fp32.with_name("int8.onnx"), options), options


def detections(backend, data, count=60):
    from rgbir.data.dataset import load_dataset
    from rgbir.runtime.postprocess import postprocess
    from rgbir.runtime.preprocess import preprocess_pair

    out = []
    for sample in load_dataset(data, "val").samples[:count]:
        arrays, _ = preprocess_pair(cv2.imread(str(sample.rgb)), cv2.imread(str(sample.ir), cv2.IMREAD_UNCHANGED),
                                    backend.metadata)
        out += postprocess(backend.infer(*arrays)["predictions"])
    return out


@demo
def test_int8_keeps_the_demo_models_accuracy(demo_fp32, int8, synthetic):
    from rgbir.eval.validate import validate
    from rgbir.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from rgbir.runtime.postprocess import match_detections

    result, _ = int8
    fp32, quantized = OnnxRuntimeBackend(demo_fp32), OnnxRuntimeBackend(result.path)
    assert quantized.metadata.precision == "int8" and quantized.metadata.io_dtype == "fp32"
    reference, candidate = validate(fp32, str(synthetic)), validate(quantized, str(synthetic))
    assert reference.ap.map50 > 0.9
    assert abs(candidate.ap.map - reference.ap.map) <= 0.02  # mAP50-95 within 2 points of fp32
    agreement = match_detections(detections(fp32, synthetic), detections(quantized, synthetic), iou=0.5)
    assert agreement.reference > 100 and agreement.matched >= 0.9 * max(agreement.reference, agreement.candidate)


@demo
def test_qdq_placement_is_what_tensorrt_fuses(demo_fp32, int8):
    result, _ = int8
    model = onnx.load(str(result.path))
    graph = model.graph
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    qdq = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qdq) > 200
    for node in qdq:  # symmetric INT8: every zero point is an int8 zero
        zero_point = constants[node.input[2]]
        assert zero_point.dtype == np.int8 and not zero_point.any()
    weighted = [n for n in graph.node if n.op_type in ("Conv", "Gemm") and n.input[1] in producer]
    matmuls = [n for n in graph.node if n.op_type == "MatMul"]  # the C2PSA attention products: no weights
    assert len(weighted) + len(matmuls) == len(result.quantized)
    for node in weighted:
        dq = producer[node.input[1]]
        weight, scale = constants[dq.input[0]], constants[dq.input[1]]
        axis = {a.name: a.i for a in dq.attribute}.get("axis", 1)
        out_axis = 0 if node.op_type == "Conv" else 1 - {a.name: a.i for a in node.attribute}.get("transB", 0)
        assert weight.dtype == np.int8 and axis == out_axis and scale.shape == (weight.shape[out_axis],)
        assert len(node.input) < 3 or node.input[2] in constants  # biases stay float
    activations = {producer[producer[n.input[0]].input[0]].input[0] for n in graph.node
                   if n.op_type in ("Conv", "Gemm", "MatMul") and n.input[0] in producer
                   and producer[n.input[0]].op_type == "DequantizeLinear"}  # the float tensor before Q → DQ
    assert {"rgb", "ir"} <= activations  # per-tensor Q/DQ on the activations that weighted layers read ...
    for q in (n for n in graph.node if n.op_type == "QuantizeLinear"):  # ... and never on their outputs
        assert q.input[0] not in producer or producer[q.input[0]].op_type not in ("Conv", "Gemm", "MatMul")
        assert constants[q.input[1]].size == 1


@demo
def test_the_plugin_node_softmaxes_layernorms_dfl_and_decoding_stay_float(demo_fp32, int8):
    result, _ = int8
    source, model = onnx.load(str(demo_fp32)), onnx.load(str(result.path))
    attention = [n for n in model.graph.node if n.domain == OP.domain and n.op_type == OP.name]
    assert len(attention) == 2 and [(f.domain, f.name) for f in model.functions] == [(OP.domain, OP.name)]
    assert all({a.name for a in n.attribute} >= {"plugin_namespace", "k_divisors"} for n in attention)
    assert [len(n.input) for n in attention] == [3, 3]
    # the DFL (its weight is named ...dfl...) and everything after it: box decoding
    users: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    dfl = [n for n in model.graph.node if n.op_type == "Conv" and ".dfl." in n.input[1]]
    assert len(dfl) == 1
    decode, stack = set(), list(dfl)
    while stack:
        node = stack.pop()
        if node.name not in decode:
            decode.add(node.name)
            stack += [u for o in node.output for u in users.get(o, [])]
    assert len(decode) > 8
    float_nodes = [n for n in model.graph.node
                   if n.name in decode or n.op_type in (OP.name, "Softmax", "LayerNormalization")]
    producer = {o: n for n in model.graph.node for o in n.output}
    assert len(float_nodes) == len(decode) + 2 + 4 + 2
    assert [(n.name, quantized_inputs(n, producer)) for n in float_nodes if quantized_inputs(n, producer)] == []
    # and the graph runs with float I/O like the fp32 one
    assert [(i.name, i.type.tensor_type.elem_type) for i in model.graph.input] == \
        [(i.name, i.type.tensor_type.elem_type) for i in source.graph.input]


@demo
def test_rgbir_check_passes_the_int8_model_and_it_is_smaller(demo_fp32, int8):
    result, _ = int8
    report = check_onnx(result.path)
    assert report.passed and not report.warnings
    assert any("INT8 Q/DQ graph" in f.message for f in report.findings)
    assert result.size_bytes < 0.3 * demo_fp32.stat().st_size  # INT8 weights
    meta = onnx_metadata(onnx.load(str(result.path)), result.path)
    assert meta.source["quantization"]["method"] == "percentile"
    assert meta.source["quantization"]["calibration_pairs"] == 32


@demo
def test_skip_layers_keep_layers_float_and_name_unknown_ones(demo_fp32, int8, tmp_path):
    from rgbir.export.qdq_placement import layer_paths, skipped_nodes
    from rgbir.export.quantize import quantize_onnx

    _, options = int8
    options.skip_layers = ("model.0", "model.42.cv2")
    result = quantize_onnx(demo_fp32, tmp_path / "skip.onnx", options)  # ranges from the cache: no calibration
    assert result.calibration_pairs == 0
    model = onnx.load(str(result.path))
    producer = {o: n for n in model.graph.node for o in n.output}
    convs = {n.input[1].removeprefix("model."): n for n in model.graph.node if n.op_type == "Conv"}
    for weight, conv in convs.items():
        quantized = bool(quantized_inputs(conv, producer))
        assert quantized == (not weight.startswith(("model.0.", "model.42.cv2.")) and ".dfl." not in weight
                             and not weight.startswith(("model.42.cv3.0.2", "model.42.cv3.1.2", "model.42.cv3.2.2"))), \
            weight
    source = onnx.load(str(demo_fp32))
    paths = layer_paths(source)
    skipped = {paths[n] for n in skipped_nodes(source, ["model.4"], paths)}  # a prefix of model.42 is not model.42
    assert skipped == {"model.4.cv1.conv", "model.4.cv2.conv", "model.4.m.0.cv1.conv", "model.4.m.0.cv2.conv"}
    with pytest.raises(RgbirError, match="names no node or layer.*model.0"):
        skipped_nodes(source, ["model.99"], paths)


@demo
def test_sensitivity_reports_each_group_against_fp32(demo_fp32, int8):
    from rgbir.export.quantize import QuantizeOptions, sensitivity

    _, options = int8
    cached = QuantizeOptions(options.calibration_data, calibration_images=2,
                             calibration_cache=options.calibration_cache)
    results = sensitivity(demo_fp32, cached, batches=2, groups=["model.0", "model.42"])
    assert results[0].group == "all" and {r.group for r in results[1:]} == {"model.0", "model.42"}
    assert results[0].nodes == len(int8[0].quantized) and all(0 <= r.box_error < 0.2 for r in results)
    assert results[1].error >= results[2].error and results[0].error > 0
    with pytest.raises(RgbirError, match="no quantizable layer group model.23"):
        sensitivity(demo_fp32, cached, batches=1, groups=["model.23"])


@demo
def test_sensitivity_preprocesses_each_calibration_pair_once(demo_fp32, synthetic, monkeypatch, tmp_path):
    """The batches it compares on are the first of those it calibrates on: each pair is read and letterboxed once."""
    from rgbir.export.quantize import QuantizeOptions, sensitivity
    from rgbir.trt import calibration

    preprocessed = []
    real = calibration.preprocess_pair
    monkeypatch.setattr(calibration, "preprocess_pair", lambda *a, **k: preprocessed.append(a[2]) or real(*a, **k))
    options = QuantizeOptions(str(synthetic), calibration_images=4, calibration_cache=tmp_path / "ranges.json")
    results = sensitivity(demo_fp32, options, batches=2, groups=["model.0"])
    assert [r.group for r in results] == ["all", "model.0"] and (tmp_path / "ranges.json").is_file()
    assert len(preprocessed) == 4  # 2 compared and calibrated on, 2 calibrated on


def test_too_few_calibration_pairs_for_one_batch_are_one_line(synthetic):
    from rgbir.export.activation_ranges import calibration_inputs

    with pytest.raises(RgbirError, match="^3 calibration pairs cannot fill one batch of 4$"):
        calibration_inputs(str(synthetic), 3, metadata(batch=4))
    count, _ = calibration_inputs(str(synthetic), 9, metadata(batch=4))
    assert count == 8  # full batches only


@demo
def test_the_cli_quantizes_validates_and_refuses_what_it_cannot_quantize(demo_fp32, int8, synthetic, tmp_path,
                                                                         capsys):
    _, options = int8
    out = tmp_path / "cli-int8.onnx"
    assert main(["quantize", str(demo_fp32), "-o", str(out), "--calib", str(synthetic),
                 "--calib-cache", str(options.calibration_cache)]) == 0
    assert "nodes with INT8 inputs" in capsys.readouterr().out
    assert main(["val", "--model", str(out), "--data", str(synthetic)]) == 0
    assert "mAP50-95" in capsys.readouterr().out
    for argv, message in (([str(out)], "quantize an fp32 export"),
                          ([str(demo_fp32), "--method", "kl"], "calibration method 'kl' is not one of"),
                          ([str(demo_fp32), "--skip-layers", "nowhere"], "names no node or layer")):
        assert main(["quantize", *argv, "-o", str(tmp_path / "x.onnx"), "--calib", str(synthetic)]) == 2
        assert message in capsys.readouterr().err


def test_fp16_and_inlined_exports_are_refused(tmp_path):
    from rgbir.export.quantize import load_fp32_export

    with pytest.raises(RgbirError, match="fp16.*quantize an fp32 export"):
        load_fp32_export(small_onnx(tmp_path / "fp16.onnx", metadata(precision="fp16")))
    with pytest.raises(RgbirError, match="without --inline-attention"):
        load_fp32_export(small_onnx(tmp_path / "inlined.onnx", metadata(attention="inlined")))


def test_orts_pre_processing_would_inline_the_plugin_node_so_it_is_skipped(tmp_path):
    from onnxruntime.quantization.shape_inference import quant_pre_process

    path = small_onnx(tmp_path / "m.onnx", metadata())
    quant_pre_process(str(path), str(tmp_path / "pre.onnx"))
    model = onnx.load(str(tmp_path / "pre.onnx"))
    assert OP.name not in [n.op_type for n in model.graph.node] and "TopK" in [n.op_type for n in model.graph.node]


# rgbir check: Q/DQ patterns TensorRT rejects -------------------------------------------------------------------
def qdq_conv(tmp_path, zero_point=0, dtype=np.int8, axis=0, bias_dq=False, channels=4):
    """x → Q → DQ → Conv with a per-channel INT8 weight behind a DQ (and optionally an INT32 bias DQ)."""
    weight = numpy_helper.from_array(np.ones((channels, 2, 3, 3), np.int8), "w")
    scales = numpy_helper.from_array(np.full(channels, 0.1, np.float32), "w_scale")
    zeros = numpy_helper.from_array(np.zeros(channels, np.int8), "w_zero")
    x_scale = numpy_helper.from_array(np.array(0.02, np.float32), "x_scale")
    x_zero = numpy_helper.from_array(np.array(zero_point, dtype), "x_zero")
    dq_attrs = {} if axis is None else {"axis": axis}
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"], name="q_x"),
             helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xd"], name="dq_x"),
             helper.make_node("DequantizeLinear", ["w", "w_scale", "w_zero"], ["wd"], name="dq_w", **dq_attrs)]
    initializers = [weight, scales, zeros, x_scale, x_zero]
    conv_inputs = ["xd", "wd"]
    if bias_dq:
        initializers += [numpy_helper.from_array(np.ones(channels, np.int32), "b"),
                         numpy_helper.from_array(np.full(channels, 0.002, np.float32), "b_scale")]
        nodes.append(helper.make_node("DequantizeLinear", ["b", "b_scale"], ["bd"], name="dq_b"))
        conv_inputs.append("bd")
    nodes.append(helper.make_node("Conv", conv_inputs, ["y"], name="conv"))
    return save(tmp_path, nodes, [value("x", [1, 2, 8, 8])], [value("y", [1, channels, 6, 6])], initializers)


def errors(path):
    return [(f.node, f.message) for f in check_onnx(path).findings if f.severity == "error"]


def test_check_accepts_symmetric_int8_with_per_channel_weights_on_the_output_axis(tmp_path):
    assert errors(qdq_conv(tmp_path)) == []


def test_check_flags_asymmetric_zero_points_and_uint8(tmp_path):
    found = errors(qdq_conv(tmp_path, zero_point=128, dtype=np.uint8))
    assert {node for node, _ in found} == {"q_x", "dq_x"}
    assert any("non-zero zero point" in m for _, m in found) and any("of UINT8" in m for _, m in found)


def test_check_flags_per_channel_weights_without_or_off_the_output_axis(tmp_path):
    (node, message), = errors(qdq_conv(tmp_path, axis=None))
    assert node == "dq_w" and "no axis attribute (ONNX's default 1)" in message and "axis 0 of Conv" in message
    (node, message), = errors(qdq_conv(tmp_path, axis=1, channels=2))
    assert node == "dq_w" and "axis 1" in message


def test_check_flags_an_int32_bias_dequantize(tmp_path):
    (node, message), = errors(qdq_conv(tmp_path, bias_dq=True))
    assert node == "dq_b" and "INT32" in message and "keep biases float" in message


def test_check_flags_qdq_feeding_the_plugin_node(tmp_path):
    path = small_onnx(tmp_path / "m.onnx", metadata())
    model = onnx.load(str(path))
    scale = numpy_helper.from_array(np.array(0.02, np.float32), "s")
    zero = numpy_helper.from_array(np.array(0, np.int8), "z")
    model.graph.initializer.extend([scale, zero])
    identity = next(n for n in model.graph.node if n.output[0] == "q")
    identity.output[0] = "q_float"
    model.graph.node.insert(0, helper.make_node("QuantizeLinear", ["rgb", "s", "z"], ["rgb_q"], name="q"))
    model.graph.node.insert(1, helper.make_node("DequantizeLinear", ["rgb_q", "s", "z"], ["rgb_dq"], name="dq"))
    identity.input[0] = "rgb_dq"
    identity.output[0] = "q"
    onnx.save(model, str(path))
    (node, message), = errors(path)
    assert node == "model.22/TopKSparseAttention" and "comes from a Q/DQ" in message


# rgbir build: the Q/DQ model as it is ------------------------------------------------------------------------
@demo
def test_the_int8_model_builds_with_tensorrt_rtx(int8, rtx_trt, plugin_library, tmp_path):
    """TensorRT-RTX's real parser and builder take the Q/DQ graph strongly typed, the attention as the plugin."""
    from rgbir.trt import build_engine

    result = build_engine(int8[0].path, tmp_path / "int8.engine", EngineOptions(edition="rtx",
                                                                               plugin_library=plugin_library))
    assert result.precision == "int8" and result.plugin_layers == {"rgbir::TopKSparseAttention": 2}


def features(version):
    return TensorRTFeatures.of(fake_tensorrt.make(version))


def test_an_int8_onnx_builds_strongly_typed_without_calibrator_on_10_and_11():
    for version, network_flags in (("10.3.0", ["STRONGLY_TYPED"]), ("11.4.0", [])):
        for precision in ("auto", "int8"):
            plan = plan_build(EngineOptions(precision=precision), metadata(precision="int8"), features(version), True)
            assert plan.engine_precision == "int8" and plan.network_flags == network_flags
            assert not plan.calibrate and not plan.set_flags


def test_fp16_on_tensorrt_10_builds_the_qdq_graph_weakly_typed_and_11_explains():
    plan = plan_build(EngineOptions(precision="fp16"), metadata(precision="int8"), features("10.3.0"), True)
    assert plan.engine_precision == "int8" and set(plan.set_flags) == {"INT8", "FP16"} and not plan.calibrate
    with pytest.raises(RgbirError, match="already INT8|--precision auto"):
        plan_build(EngineOptions(precision="fp16"), metadata(precision="int8"), features("11.4.0"), True)
    with pytest.raises(RgbirError, match="already INT8.*drop --calib"):
        plan_build(EngineOptions(calibration_data="d.yaml"), metadata(precision="int8"), features("10.3.0"), True)
    with pytest.raises(RgbirError, match="rgbir quantize model.onnx --calib"):  # an fp32 ONNX on TensorRT 11
        plan_build(EngineOptions(precision="int8", calibration_data="d.yaml"), metadata(), features("11.4.0"), True)


def test_building_an_int8_onnx_with_the_fake_tensorrt(tmp_path):
    from rgbir.trt import build_engine
    from rgbir.trt.sidecar import read_sidecar

    onnx_path = small_onnx(tmp_path / "m-int8.onnx", metadata(precision="int8"))
    for version, network_flags in (("10.3.0", 1 << 1), ("11.4.0", 0)):
        trt = fake_tensorrt.make(version)
        result = build_engine(onnx_path, tmp_path / version / "m.engine", EngineOptions(), trt=trt, device=GPU)
        record = json.loads(result.engine.read_bytes())
        assert record["network_flags"] == network_flags and record["calibration_batches"] == 0
        assert not {"INT8", "FP16"} & set(record["flags"]) and result.precision == "int8"
        assert read_sidecar(result.engine).model.precision == "int8"
