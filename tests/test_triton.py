"""Serving through Triton Inference Server (issue 18): model repositories whose configs Triton's own protobuf
definitions parse, and the triton:// backend against the real tritonserver of the nvidia-pytriton wheel (Python
backend only, so the ONNX export is served by rgbir's python-onnxruntime model) on loopback ports — detections
equal to local ONNX Runtime's, raw frames through the preprocessing ensemble, batching, and one-line errors when
the server is away or dies mid-run, with every record written before it intact."""

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from clirun import one_line_error, rgbir
from media import write_folders
from rgbir.cli.main import main
from rgbir.errors import RgbirError
from rgbir.metadata import METADATA_KEY, InputSpec, ModelMetadata, PostprocessSpec, onnx_metadata
from rgbir.serve import RepoOptions, network_tensors, write_repository
from rgbir.trt.sidecar import EngineMetadata, write_sidecar
from test_cli_errors import records

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient not installed")
text_format = pytest.importorskip("google.protobuf.text_format")


def parse_config(path: Path):
    """A config.pbtxt as Triton reads it: its ModelConfig message (text_format raises on anything it lacks)."""
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def parameters(config) -> dict[str, str]:
    return {key: value.string_value for key, value in config.parameters.items()}


def dims(tensor) -> list[int]:
    return list(tensor.dims)


def with_metadata(source: Path, target: Path, **changes) -> Path:
    """A copy of an ONNX export whose rgbir metadata has ``changes`` (the graph itself is left as it is)."""
    model = onnx.load(str(source))
    meta = onnx_metadata(model, source)
    for key, value in changes.items():
        setattr(meta, key, value)
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = meta.to_json()
    onnx.save(model, str(target))
    return target


def dynamic_onnx(path: Path) -> Path:
    """A small dynamic-batch model with rgbir metadata (two strided convolutions, 2 classes, one stride of 8): what
    a batching server test needs, without a second detector export."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    init = [numpy_helper.from_array((rng.standard_normal((6, 3, 8, 8)) * 0.05).astype(np.float32), name)
            for name in ("w_rgb", "w_ir")] + [numpy_helper.from_array(np.array([0, 6, -1], np.int64), "shape")]
    nodes = [helper.make_node("Conv", ["rgb", "w_rgb"], ["a"], strides=[8, 8]),
             helper.make_node("Conv", ["ir", "w_ir"], ["b"], strides=[8, 8]),
             helper.make_node("Add", ["a", "b"], ["c"]),
             helper.make_node("Reshape", ["c", "shape"], ["predictions"])]

    def io(name, *shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", *shape])

    graph = helper.make_graph(nodes, "dynamic", [io("rgb", 3, 128, 160), io("ir", 3, 128, 160)],
                              [io("predictions", 6, 320)], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    meta = ModelMetadata("0.1.0", {0: "a", 1: "b"}, (128, 160), None,
                         [InputSpec("rgb", 3, "RGB"), InputSpec("ir", 3, "RGB")], [8.0])
    helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    onnx.save(model, str(path))
    return path


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# repositories -------------------------------------------------------------------------------------------------------
def test_repository_configs_parse_with_tritons_own_protos(tiny_onnx, tmp_path):
    repo = write_repository(tiny_onnx, tmp_path / "repo", RepoOptions(name="tiny", instances=2, kind="cpu",
                                                                      platform="python-onnxruntime", preprocess=True))
    root = tmp_path / "repo"
    assert repo.models == ["tiny_ensemble", "tiny", "tiny_preprocess"] and repo.server_flags == []
    meta = onnx_metadata(onnx.load(str(tiny_onnx)), tiny_onnx)

    model = parse_config(root / "tiny" / "config.pbtxt")
    assert model.backend == "python" and model.max_batch_size == 0  # a fixed batch: full dims, no batcher
    assert [(t.name, model_config_pb2.DataType.Name(t.data_type), dims(t)) for t in model.input] == \
        [("rgb", "TYPE_FP32", [1, 3, 128, 160]), ("ir", "TYPE_FP32", [1, 3, 128, 160])]
    assert [(t.name, dims(t)) for t in model.output] == [("predictions", [1, 6, 420])]
    assert not model.HasField("dynamic_batching")
    group = model.instance_group[0]
    assert group.count == 2 and group.kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    params = parameters(model)
    assert ModelMetadata.from_json(params["rgbir"]) == meta
    assert json.loads(params["rgbir_names"]) == ["class0", "class1"] and params["rgbir_strides"] == "8,16,32"
    assert params["rgbir_imgsz"] == "128,160" and json.loads(params["rgbir_letterbox"]) == meta.letterbox
    assert (root / "tiny/1/model.onnx").read_bytes() == tiny_onnx.read_bytes()
    assert (root / "tiny/1/model.py").is_file()

    pre = parse_config(root / "tiny_preprocess" / "config.pbtxt")
    assert [(t.name, model_config_pb2.DataType.Name(t.data_type), dims(t)) for t in pre.input] == \
        [("rgb_frame", "TYPE_UINT8", [-1, -1, -1]), ("ir_frame", "TYPE_UINT8", [-1, -1, -1])]
    assert [(t.name, dims(t)) for t in pre.output] == [("rgb", [1, 3, 128, 160]), ("ir", [1, 3, 128, 160]),
                                                      ("rgb_letterbox", [3]), ("ir_letterbox", [3])]
    assert pre.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU

    ensemble = parse_config(root / "tiny_ensemble" / "config.pbtxt")
    assert ensemble.platform == "ensemble" and (root / "tiny_ensemble" / "1").is_dir()
    steps = ensemble.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["tiny_preprocess", "tiny"]
    assert dict(steps[1].input_map) == {"rgb": "rgb", "ir": "ir"}
    assert parameters(ensemble)["rgbir_inputs"] == "frames"

    write_repository(tiny_onnx, tmp_path / "ort")  # the default for an export: Triton's ONNX Runtime backend
    plain = parse_config(tmp_path / "ort" / "tiny" / "config.pbtxt")
    assert plain.platform == "onnxruntime_onnx" and not plain.backend and plain.instance_group[0].kind == 0  # auto
    assert not (tmp_path / "ort" / "tiny" / "1" / "model.py").exists()


def test_a_dynamic_batch_gets_a_batcher_and_dims_without_the_batch(tiny_onnx, tmp_path):
    dynamic = with_metadata(tiny_onnx, tmp_path / "dynamic.onnx", batch=None)
    write_repository(dynamic, tmp_path / "repo")
    config = parse_config(tmp_path / "repo" / "dynamic" / "config.pbtxt")
    assert config.max_batch_size == 8 and config.HasField("dynamic_batching")
    assert [dims(t) for t in config.input] == [[3, 128, 160]] * 2 and dims(config.output[0]) == [6, 420]
    write_repository(dynamic, tmp_path / "repo", RepoOptions(max_batch=4, queue_delay_us=500, force=True))
    config = parse_config(tmp_path / "repo" / "dynamic" / "config.pbtxt")
    assert config.max_batch_size == 4 and config.dynamic_batching.max_queue_delay_microseconds == 500


def test_an_engine_serves_on_tensorrt_with_its_plugin_and_profile(tiny_onnx, tmp_path):
    meta = onnx_metadata(onnx.load(str(tiny_onnx)), tiny_onnx)
    meta.batch = None
    engine, plugin = tmp_path / "model.engine", tmp_path / "librgbir_plugins.so"
    engine.write_bytes(b"\0plan" * 400)
    plugin.write_bytes(b"\x7fELF")
    profile = {"batch": {"min": 1, "opt": 2, "max": 4}}
    write_sidecar(engine, EngineMetadata(meta, "10.3.0", "Orin", (8, 7), build=profile, plugin_library=str(plugin)))
    repo = write_repository(engine, tmp_path / "repo", RepoOptions(name="det", kind="gpu"))
    config = parse_config(tmp_path / "repo" / "det" / "config.pbtxt")
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 4  # the profile's maximum
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert (tmp_path / "repo" / "det" / "1" / "model.plan").read_bytes() == engine.read_bytes()
    assert repo.server_flags == [f"--backend-config=tensorrt,plugins={plugin.resolve()}"]
    assert parameters(config)["rgbir_plugin_library"] == str(plugin.resolve())
    with pytest.raises(RgbirError, match="profile takes at most 4"):
        write_repository(engine, tmp_path / "repo", RepoOptions(max_batch=8))
    with pytest.raises(RgbirError, match="runs on a GPU"):
        write_repository(engine, tmp_path / "repo", RepoOptions(kind="cpu"))
    plugin.unlink()
    with pytest.raises(RgbirError, match="not on this machine: give --plugin"):
        write_repository(engine, tmp_path / "repo")
    (tmp_path / "model.engine.json").unlink()
    with pytest.raises(RgbirError, match="no rgbir sidecar"):
        write_repository(engine, tmp_path / "repo")


def test_network_tensors_are_what_the_export_declares(tiny_onnx, tmp_path):
    import onnxruntime as ort

    from rgbir.export.nms import append_nms

    nms = onnx.load(str(tiny_onnx))
    spec = PostprocessSpec("nms", 50, 0.6, 0.3)
    append_nms(nms, spec)
    onnx.save(nms, str(tmp_path / "nms.onnx"))
    with_metadata(tmp_path / "nms.onnx", tmp_path / "nms.onnx", postprocess=spec)
    for path in (tiny_onnx, tmp_path / "nms.onnx"):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        inputs, outputs = network_tensors(onnx_metadata(onnx.load(str(path)), path))
        kinds = {"tensor(float)": "float32", "tensor(int32)": "int32"}
        declared = [(t.name, kinds[t.type], tuple(t.shape[1:])) for t in session.get_inputs() + session.get_outputs()]
        assert declared == [(t.name, t.dtype, t.dims) for t in inputs + outputs]


def test_metadata_survives_text_format_escaping(tiny_onnx, tmp_path):
    names = {0: 'a "quoted" \\ name', 1: "Fußgänger\nzweite Zeile"}
    model = with_metadata(tiny_onnx, tmp_path / "names.onnx", names=names)
    write_repository(model, tmp_path / "repo")
    params = parameters(parse_config(tmp_path / "repo" / "names" / "config.pbtxt"))
    assert ModelMetadata.from_json(params["rgbir"]).names == names
    assert json.loads(params["rgbir_names"]) == [names[0], names[1]]


@pytest.mark.parametrize("extra, fragment", [
    (["--max-batch", "4"], "fixed batch of 1"),
    (["--queue-delay-us", "100"], "fixed batch of 1"),
    (["--plugin", "x.so"], "--plugin applies to TensorRT engines"),
    (["--platform", "tensorrt"], "build a TensorRT engine from it"),
    (["--name", "a/b"], "not a Triton model name"),
    (["--instances", "0"], "--instances 0 must be >= 1"),
    (["--max-batch", "x"], "--max-batch takes whole numbers, got 'x'"),  # RepoOptions' flags, read as the others
    (["--kind", "tpu"], "instance kind 'tpu' is not one of auto, gpu, cpu"),
])
def test_triton_repo_refuses_in_one_line(tiny_onnx, tmp_path, capsys, extra, fragment):
    assert main(["triton-repo", str(tiny_onnx), "-o", str(tmp_path / "repo"), *extra]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rgbir triton-repo: error: ") and fragment in lines[0], lines
    assert not (tmp_path / "repo").exists()  # refused before anything was written


def test_triton_repo_checks_its_output_and_model_first(tiny_onnx, tmp_path, capsys):
    (tmp_path / "repo").write_text("a file where the repository should be\n")
    assert main(["triton-repo", str(tiny_onnx), "-o", str(tmp_path / "repo")]) == 2
    assert "cannot write Triton model repository file" in capsys.readouterr().err
    (tmp_path / "weights.pt").write_bytes(b"x")
    assert main(["triton-repo", str(tmp_path / "weights.pt"), "-o", str(tmp_path / "r2")]) == 2
    assert "neither an ONNX export" in capsys.readouterr().err
    assert main(["triton-repo", str(tiny_onnx), "-o", str(tmp_path / "r3"), "--preprocess"]) == 0
    out = capsys.readouterr().out
    assert "tiny_ensemble" in out and "tritonserver --model-repository=" in out and "triton://" in out


# addresses and errors without a server ------------------------------------------------------------------------------
def test_triton_addresses():
    from rgbir.runtime.backends import backend_kind
    from rgbir.runtime.backends.triton_backend import TritonAddress

    a = TritonAddress.parse("triton://gpu-box/det")
    assert (a.protocol, a.server, a.model, a.version, a.timeout) == ("http", "gpu-box:8000", "det", "", 30.0)
    a = TritonAddress.parse("triton+grpc://10.0.0.2:9001/det/3?timeout=2.5&connect_timeout=1")
    assert (a.protocol, a.server, a.version, a.timeout, a.connect_timeout) == ("grpc", "10.0.0.2:9001", "3", 2.5, 1)
    assert backend_kind("triton+grpc://h/m") == "triton" and backend_kind("model.onnx") == "onnxruntime"
    for bad in ("triton://host", "triton://host:99999/m", "triton://host/m/latest", "triton://h/m?retries=3",
                "triton://h/m?timeout=0", "http://host/m"):
        with pytest.raises(RgbirError):
            TritonAddress.parse(bad)


def test_run_with_no_server_there_is_one_line(frames):
    rgb, ir = frames
    port = closed_port()
    line = one_line_error(rgbir("run", "--model", f"triton://127.0.0.1:{port}/tiny?connect_timeout=2", "--rgb", rgb,
                                "--ir", ir, "--stats-interval", "0"), f"127.0.0.1:{port}", "does not answer")
    assert "start tritonserver there" in line
    from rgbir.runtime.backends import open_backend

    with pytest.raises(RgbirError, match=r"--providers \(ONNX Runtime only\) does not apply to the triton backend"):
        open_backend(f"triton://127.0.0.1:{port}/tiny", providers=["cpu"])


# against the real server ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    return write_folders(tmp_path_factory.mktemp("frames"), 12)


@pytest.fixture(scope="module")
def served(tiny_onnx, tmp_path_factory):
    """A repository: the tiny export with its preprocessing ensemble, and a dynamic-batch model (both on rgbir's
    python-onnxruntime model: this server has no ONNX Runtime backend)."""
    root = tmp_path_factory.mktemp("triton") / "repo"
    python = dict(platform="python-onnxruntime", kind="cpu")
    write_repository(tiny_onnx, root, RepoOptions(name="tiny", preprocess=True, **python))
    write_repository(dynamic_onnx(root.parent / "dynamic.onnx"), root, RepoOptions(name="dyn", queue_delay_us=100_000,
                                                                                    **python))
    return root


@pytest.fixture(scope="module")
def installation():
    from triton_server import install, unsupported

    reason = unsupported()
    if reason:
        pytest.skip(reason)
    try:
        return install()
    except (RuntimeError, OSError) as e:
        pytest.skip(f"cannot install the Triton server from PyPI: {e}")


@pytest.fixture(scope="module")
def triton(installation, served, tmp_path_factory):
    from triton_server import LocalServer

    with LocalServer(installation, served, tmp_path_factory.mktemp("server")) as server:
        yield server


def detections(path: Path) -> list[list[dict]]:
    return [r["detections"] for r in records(path)]


def assert_same_detections(expected: list[list[dict]], got: list[list[dict]]) -> None:
    assert len(got) == len(expected)
    for want, have in zip(expected, got):
        assert [d["class"] for d in have] == [d["class"] for d in want]
        for a, b in zip(want, have):
            assert abs(a["score"] - b["score"]) <= 1e-4
            for box in ("box_rgb", "box_ir"):
                assert np.allclose(a[box], b[box], atol=0.02)


@pytest.mark.slow
def test_run_through_triton_equals_local_onnxruntime(triton, tiny_onnx, frames, tmp_path):
    """Network inputs over HTTP, and raw frames over gRPC through the preprocessing ensemble: the same detections."""
    rgb, ir = frames
    grpc = triton.grpc.split(":")[1]
    runs = {"local": str(tiny_onnx), "http": f"triton://{triton.http}/tiny",
            "ensemble": f"triton+grpc://127.0.0.1:{grpc}/tiny_ensemble"}
    for name, model in runs.items():
        result = rgbir("run", "--model", model, "--rgb", rgb, "--ir", ir, "--json", tmp_path / f"{name}.jsonl",
                       "--stats-interval", "0")
        assert result.returncode == 0, result.stderr
    local = detections(tmp_path / "local.jsonl")
    assert len(local) == 12 and sum(map(len, local)) > 0
    assert_same_detections(local, detections(tmp_path / "http.jsonl"))
    assert_same_detections(local, detections(tmp_path / "ensemble.jsonl"))


@pytest.mark.slow
def test_parity_batches_and_concurrent_requests_through_triton(triton, tiny_onnx, served):
    from rgbir.parity import compare, random_inputs
    from rgbir.runtime.backends import open_backend

    with open_backend(tiny_onnx) as local, open_backend(f"triton://{triton.http}/tiny") as remote:
        assert compare(local, remote, random_inputs(local.metadata, 2), local.metadata).passed

    dynamic = served.parent / "dynamic.onnx"
    batch = np.random.default_rng(1).random((4, 3, 128, 160), dtype=np.float32)
    with open_backend(dynamic) as local, open_backend(f"triton+grpc://{triton.grpc}/dyn") as remote:
        assert remote.max_batch == 8 and remote.inputs[0].shape == (None, 3, 128, 160)
        expected = local.infer(batch, batch)["predictions"]
        np.testing.assert_allclose(remote.infer(batch, batch)["predictions"], expected, atol=1e-5)
        got = [None] * 16
        threads = [threading.Thread(target=lambda i=i: got.__setitem__(i, remote.infer(batch[i % 4: i % 4 + 1],
                                                                                       batch[i % 4: i % 4 + 1])))
                   for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, out in enumerate(got):
            np.testing.assert_allclose(out["predictions"], expected[i % 4: i % 4 + 1], atol=1e-5)
    import tritonclient.http as httpclient

    stats = httpclient.InferenceServerClient(triton.http).get_inference_statistics("dyn")["model_stats"][0]
    assert stats["execution_count"] < stats["inference_stats"]["success"]["count"]  # requests joined in one ORT call


@pytest.mark.slow
def test_val_through_the_preprocessing_ensemble_equals_local(triton, tiny_onnx, tmp_path):
    from rgbir.data.synthetic import SceneConfig, write_dataset
    from rgbir.eval.validate import validate
    from rgbir.runtime.backends import open_backend

    data = write_dataset(tmp_path / "syn", 0, 4, SceneConfig(size=(96, 128)))
    with open_backend(tiny_onnx) as local, open_backend(f"triton+grpc://{triton.grpc}/tiny_ensemble") as remote:
        assert remote.takes_frames
        with pytest.raises(RgbirError, match="needs one IR frame per RGB frame"):  # checked here, as every backend does
            remote.infer_frames([np.zeros((96, 128, 3), np.uint8)])
        here, there = validate(local, str(data)), validate(remote, str(data))
    assert (there.ap.map50, there.ap.map, there.instances) == (here.ap.map50, here.ap.map, here.instances)


@pytest.mark.slow
def test_a_model_the_server_lacks_is_one_line(triton, frames):
    rgb, ir = frames
    one_line_error(rgbir("run", "--model", f"triton://{triton.http}/nope", "--rgb", rgb, "--ir", ir),
                   "no ready model 'nope'", "tiny")


@pytest.mark.slow
def test_a_server_killed_mid_run_ends_the_run_in_one_line_with_every_record_whole(installation, served,
                                                                                   tmp_path):
    from triton_server import LocalServer

    rgb, ir = write_folders(tmp_path / "frames", 40)
    out = tmp_path / "out.jsonl"
    with LocalServer(installation, served, tmp_path / "server") as server:
        run = subprocess.Popen([sys.executable, "-m", "rgbir", "run", "--model", f"triton://{server.http}/tiny",
                                "--rgb", str(rgb), "--ir", str(ir), "--json", str(out), "--realtime", "--fps", "8",
                                "--stats-interval", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while (not out.exists() or len(out.read_text().splitlines()) < 3) and time.monotonic() < deadline:
            time.sleep(0.05)
        server.kill()
        stdout, stderr = run.communicate(timeout=60)
    result = subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr)
    one_line_error(result, "inference failed", "does not answer")
    written = records(out)
    assert 3 <= len(written) < 40 and [r["index"] for r in written] == list(range(len(written)))
