import json
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from lively import lively
from rgbir.errors import RgbirError
from rgbir.export import ExportOptions, export_onnx
from rgbir.metadata import METADATA_KEY, load_onnx, onnx_metadata
from rgbir.models import build_model
from rgbir.models.builder import CONFIG_DIR
from rgbir.ops import TOPK_SPARSE_ATTENTION as OP
from rgbir.parity import compare, random_inputs
from rgbir.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from rgbir.runtime.backends.torch_backend import TorchBackend
from rgbir.runtime.postprocess import from_nms_outputs, match_detections, postprocess

warnings.filterwarnings("ignore", category=UserWarning)
SIZE = (128, 160)


def ort_run(path, *arrays):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, dict(zip([i.name for i in session.get_inputs()], arrays)))


def inputs(model, size=SIZE, batch=1, ir_channels=None):
    rng = np.random.default_rng(0)
    rgb = rng.random((batch, 3, *size), dtype=np.float32)
    ir = rng.random((batch, ir_channels or model.ir_channels, *size), dtype=np.float32)
    return rgb, ir


def torch_out(model, rgb, ir):
    with torch.no_grad():
        return model(torch.from_numpy(rgb), torch.from_numpy(ir)).numpy()


@pytest.fixture(scope="module")
def msc(msc_export):
    """A YOLOMM-layout MSC checkpoint (BGR channel order, class names) and its fp32 export (conftest.py's, shared
    with test_backends.py)."""
    model, _, result = msc_export
    assert result.metadata.imgsz == SIZE
    return model, result


def test_msc_exports_one_custom_node_per_attention_with_the_contract(msc):
    _, result = msc
    proto = onnx.load(str(result.path))
    onnx.checker.check_model(proto, full_check=True)
    nodes = [n for n in proto.graph.node if n.domain == OP.domain]
    assert [n.op_type for n in nodes] == [OP.name, OP.name]  # MSC at P4 and P5
    assert [n.name for n in nodes] == [f"model.22/{OP.name}", f"model.23/{OP.name}"]
    attrs = {a.name: a for a in nodes[0].attribute}
    kinds = {name: getattr(onnx.AttributeProto, kind) for name, kind in OP.attributes}
    assert {name: attrs[name].type for name in kinds} == kinds
    assert list(attrs["k_divisors"].ints) == [2, 3] and list(attrs["weights"].floats) == pytest.approx([0.5, 0.5])
    assert attrs["plugin_version"].s == b"1" and attrs["plugin_namespace"].s == b"rgbir"
    assert [(f.domain, f.name) for f in proto.functions] == [(OP.domain, OP.name)]
    assert not any(n.op_type in ("TopK", "ScatterElements") for n in proto.graph.node)


def test_fp32_export_matches_pytorch(msc):
    model, result = msc
    rgb, ir = inputs(model)
    out, ref = ort_run(result.path, rgb, ir)[0], torch_out(model, rgb, ir)
    assert out.shape == ref.shape == (1, 6, 16 * 20 + 8 * 10 + 4 * 5)
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()


def test_metadata_tells_the_runtime_everything(msc):
    model, result = msc
    meta = onnx_metadata(load_onnx(result.path), result.path)
    assert meta == result.metadata
    assert meta.names == {0: "person", 1: "car"} and meta.nc == 2 and meta.imgsz == SIZE
    assert meta.strides == [8.0, 16.0, 32.0] and meta.modality_order == ["rgb", "ir"]
    assert [(i.name, i.channels, i.channel_order) for i in meta.inputs] == [("rgb", 3, "BGR"), ("ir", 3, "BGR")]
    assert meta.source["sha256"] == model.checkpoint.sha256 and meta.source["format"] == "ultralytics"
    assert meta.precision == "fp32" and meta.postprocess.kind == "none" and meta.attention_op == "function"
    raw = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}[METADATA_KEY]
    assert json.loads(raw)["normalization"]["scale"] == pytest.approx(1 / 255)


def test_inlined_attention_matches_the_function_form(msc, tmp_path):
    model, result = msc
    path = export_onnx(model, tmp_path / "inlined.onnx", ExportOptions(imgsz=SIZE, inline_attention=True)).path
    proto = onnx.load(str(path))
    assert not proto.functions and not any(n.domain == OP.domain for n in proto.graph.node)
    assert sum(n.op_type == "TopK" for n in proto.graph.node) == 2
    rgb, ir = inputs(model)
    np.testing.assert_allclose(ort_run(path, rgb, ir)[0], ort_run(result.path, rgb, ir)[0], atol=1e-4, rtol=1e-5)


def test_ir_folding_gives_a_one_channel_input_with_the_same_outputs(msc, tmp_path):
    model, _ = msc
    result = export_onnx(model, tmp_path / "ir1.onnx", ExportOptions(imgsz=SIZE, ir_channels=1))
    assert result.inputs[1] == ("ir", "float32", [1, 1, *SIZE]) and result.metadata.ir_folded
    assert result.metadata.inputs[1].channel_order == "GRAY"
    rgb, grey = inputs(model, ir_channels=1)
    expanded = np.repeat(grey, 3, axis=1)  # what the 3-channel model saw in training (GRAY2BGR)
    out, ref = ort_run(result.path, rgb, grey)[0], torch_out(model, rgb, expanded)
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()


def test_in_graph_nms_gives_the_four_outputs_and_matches_numpy_nms(nms_exports):
    """yolo11n-mm-mid (4 classes) at 128x160, batch 2, exported without and with NMS (max_det 50, IoU 0.5, conf 0.3)
    by conftest.py (test_tensorrt_rtx.py's refusal of NMS uses the same file)."""
    model, raw, result = nms_exports
    assert raw.metadata.imgsz == result.metadata.imgsz == SIZE and raw.metadata.postprocess.kind == "none"
    assert [o[0] for o in result.outputs] == ["num_dets", "boxes", "scores", "classes"]
    assert result.outputs[0][1:] == ("int32", [2, 1]) and result.outputs[1][2] == [2, 50, 4]
    assert result.outputs[3][1] == "int32" and result.metadata.postprocess.max_det == 50
    rgb, ir = inputs(model, batch=2)
    predictions = ort_run(raw.path, rgb, ir)[0]
    graph = from_nms_outputs(*ort_run(result.path, rgb, ir))
    numpy_side = postprocess(predictions, 0.3, 0.5, 50)
    assert all(len(d) > 10 for d in numpy_side) and len({int(c) for d in numpy_side for c in d.classes}) > 1
    for a, b in zip(numpy_side, graph):  # same predictions in, same detections out
        np.testing.assert_array_equal(a.classes, b.classes)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
    agreement = match_detections(postprocess(torch_out(model, rgb, ir), 0.3, 0.5, 50), graph, iou=0.99)
    assert agreement.matched >= 0.95 * max(agreement.reference, agreement.candidate)


def test_dynamic_batch(tmp_path):
    model = lively(build_model("yolo11n-mm-mid-tssa", nc=2))
    result = export_onnx(model, tmp_path / "dyn.onnx", ExportOptions(imgsz=SIZE, batch=None))
    assert result.inputs[0][2][0] == "batch" and result.metadata.batch is None
    for batch in (1, 3):
        rgb, ir = inputs(model, batch=batch)
        out, ref = ort_run(result.path, rgb, ir)[0], torch_out(model, rgb, ir)
        assert out.shape[0] == batch and np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()


def test_fp16_graph_is_strongly_typed_with_float32_islands(msc, tmp_path):
    model, _ = msc
    result = export_onnx(model, tmp_path / "fp16.onnx", ExportOptions(imgsz=SIZE, precision="fp16"))
    proto = onnx.shape_inference.infer_shapes(onnx.load(str(result.path)))
    assert result.inputs[0][1] == "float16" and result.outputs[0][1] == "float16"
    conv_weights = {n.input[1] for n in proto.graph.node if n.op_type == "Conv"}
    weights = [t for t in proto.graph.initializer if t.name in conv_weights]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    types = {v.name: v.type.tensor_type.elem_type for v in [*proto.graph.value_info, *proto.graph.input]}
    softmax_inputs = [types.get(n.input[0]) for n in proto.graph.node if n.op_type == "Softmax"]
    assert softmax_inputs and all(t == onnx.TensorProto.FLOAT for t in softmax_inputs)  # DFL + PSA attention
    norms = [types.get(n.input[0]) for n in proto.graph.node if n.op_type == "LayerNormalization"]
    assert norms and all(t == onnx.TensorProto.FLOAT for t in norms)  # MSC's LayerNorm
    rgb, ir = inputs(model)
    out = ort_run(result.path, rgb.astype(np.float16), ir.astype(np.float16))[0].astype(np.float32)
    ref = torch_out(model, rgb, ir)
    assert np.abs(out[:, :4] - ref[:, :4]).max() <= 3e-3 * np.abs(ref[:, :4]).max()
    assert np.abs(out[:, 4:] - ref[:, 4:]).max() <= 2e-3


def test_parity_api_reports_per_output_errors(msc):
    model, result = msc
    backend = OnnxRuntimeBackend(result.path)
    report = compare(TorchBackend(model), backend, random_inputs(backend.metadata, 2), backend.metadata)
    assert report.passed and [o.name for o in report.outputs] == ["boxes", "scores"]
    assert 0 < report.outputs[0].error < 1e-5 and report.outputs[0].scale > 100
    assert report.detections.reference > 0 and report.agreement > 0.9


@pytest.mark.parametrize("options,message", [
    (dict(imgsz=(100, 160)), "multiples of 32"),
    (dict(precision="int8"), "not one of fp32, fp16"),
    (dict(postprocess="soft-nms"), "postprocess"),
    (dict(opset=13), "opset"),
    (dict(batch=0), "batch"),
    (dict(iou=0), "iou"),
])
def test_bad_options_are_rejected_before_any_work(options, message, tmp_path):
    with pytest.raises(RgbirError, match=message):
        export_onnx(build_model("yolo11n"), tmp_path / "x.onnx", ExportOptions(**options))
    assert not (tmp_path / "x.onnx").exists()


def test_single_modality_model_exports_one_input(tmp_path):
    result = export_onnx(build_model("yolo11n", nc=3), tmp_path / "y.onnx", ExportOptions(imgsz=SIZE))
    assert [i[0] for i in result.inputs] == ["rgb"] and result.metadata.modality_order == ["rgb"]


# each config in both precisions, one square and one LLVIP-shaped (W=640, H=512) input: every axis is covered
# without the full cross product (24 640-pixel exports were a third of CI's time); test_tensorrt_rtx.py builds the
# same files with TensorRT-RTX
SHIPPED = [(config, imgsz, precision) for config in sorted(p.stem for p in CONFIG_DIR.glob("yolo11-mm-*.yaml"))
           for imgsz, precision in (((640, 640), "fp16"), ((512, 640), "fp32"))]


@pytest.mark.slow
@pytest.mark.parametrize("config, imgsz, precision", SHIPPED, ids=[f"{c}-{s[0]}x{s[1]}-{p}" for c, s, p in SHIPPED])
def test_every_shipped_config_exports_and_matches_pytorch(config, imgsz, precision, shipped_export):
    model, result = shipped_export(config, imgsz, precision)
    backend = OnnxRuntimeBackend(result.path)
    report = compare(TorchBackend(model), backend, random_inputs(backend.metadata, 1), backend.metadata)
    assert report.detections.reference > 0
    assert report.passed, [(o.name, o.error, o.tolerance) for o in report.outputs]
