"""``rgbir check``: each TensorRT hazard is found on a small crafted graph, with its node named."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from rgbir.cli import main
from rgbir.errors import RgbirError
from rgbir.export.check import check_onnx


def save(tmp_path, nodes, inputs, outputs, initializers=(), functions=(), name="m.onnx", domains=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    opsets = [helper.make_opsetid("", 18)] + [helper.make_opsetid(d, 1) for d in domains]
    model = helper.make_model(graph, opset_imports=opsets, functions=list(functions))
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def value(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def findings(path, severity):
    return [(f.node, f.message) for f in check_onnx(path).findings if f.severity == severity]


def test_topk_over_the_tensorrt_limit_is_an_error(tmp_path):
    k = numpy_helper.from_array(np.array([5000], np.int64), "k")
    path = save(tmp_path, [helper.make_node("TopK", ["x", "k"], ["v", "i"], name="big_topk")],
                [value("x", [1, 8000])], [value("v", [1, 5000]), value("i", [1, 5000], TensorProto.INT64)], [k])
    errors = findings(path, "error")
    assert errors and errors[0][0] == "big_topk" and "K=5000" in errors[0][1]


def test_topk_k_computed_from_shapes_is_evaluated(tmp_path):
    nodes = [helper.make_node("Shape", ["x"], ["s"], start=1, end=2),
             helper.make_node("Div", ["s", "two"], ["k"]),
             helper.make_node("TopK", ["x", "k"], ["v", "i"], name="shape_topk")]
    two = numpy_helper.from_array(np.array([2], np.int64), "two")
    path = save(tmp_path, nodes, [value("x", ["batch", 9000])],
                [value("v", ["batch", None]), value("i", ["batch", None], TensorProto.INT64)], [two])
    assert any("K=4500" in m for _, m in findings(path, "error"))


def test_conv_with_runtime_weights_is_an_error(tmp_path):
    path = save(tmp_path, [helper.make_node("Conv", ["x", "w"], ["y"], name="dynamic_conv")],
                [value("x", [1, 4, 8, 8]), value("w", [4, 4, 3, 3])], [value("y", [1, 4, 6, 6])])
    assert [n for n, _ in findings(path, "error")] == ["dynamic_conv"]


def test_unsupported_and_custom_ops(tmp_path):
    body = helper.make_function("acme", "Twice", ["x"], ["y"], [helper.make_node("Add", ["x", "x"], ["y"])],
                                [helper.make_opsetid("", 18)])
    nodes = [helper.make_node("Col2Im", ["x", "a", "b"], ["y"], name="col2im"),
             helper.make_node("Twice", ["x"], ["t"], domain="acme", name="with_body"),
             helper.make_node("Mystery", ["x"], ["u"], domain="acme", name="no_body")]
    path = save(tmp_path, nodes, [value("x", [1, 4, 4]), value("a", [2], TensorProto.INT64),
                                  value("b", [2], TensorProto.INT64)],
                [value("y", None), value("t", None), value("u", None)], functions=[body], domains=["acme"])
    errors, warnings = dict(findings(path, "error")), dict(findings(path, "warning"))
    assert "col2im" in errors and "no_body" in errors and "with_body" in warnings


def test_int64_io_and_unbounded_dynamic_dims_are_warnings(tmp_path):
    path = save(tmp_path, [helper.make_node("Identity", ["x"], ["y"])],
                [value("x", ["n", 3], TensorProto.INT64)], [value("y", ["n", 3], TensorProto.INT64)])
    warnings = findings(path, "warning")
    assert any("INT64" in m for _, m in warnings) and any("dynamic dims [0]" in m for _, m in warnings)
    report = check_onnx(path)
    assert report.passed  # warnings alone pass
    assert main(["check", str(path)]) == 0 and main(["check", str(path), "--strict"]) == 1


def test_cli_exit_code_reflects_errors(tmp_path):
    path = save(tmp_path, [helper.make_node("Conv", ["x", "w"], ["y"])],
                [value("x", [1, 4, 8, 8]), value("w", [4, 4, 3, 3])], [value("y", [1, 4, 6, 6])])
    assert main(["check", str(path)]) == 1


def test_missing_or_unreadable_files(tmp_path):
    with pytest.raises(RgbirError, match="no such ONNX file"):
        check_onnx(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01garbage")
    with pytest.raises(RgbirError, match="not a readable ONNX file"):
        check_onnx(junk)


def test_advice_names_rgbir_flags_not_trtexec_ones(tmp_path):
    from attention_onnx import metadata, small_onnx

    path = small_onnx(tmp_path / "m.onnx", metadata(precision="fp16"))
    messages = [f.message for f in check_onnx(path).findings]
    assert any("rgbir build" in m and "FP16" in m for m in messages)
    assert any("rgbir build --batch MIN,OPT,MAX" in m for m in messages)  # the dynamic batch
    assert not any("--fp16" in m or "--strongly-typed" in m for m in messages)
