"""The PyTorch backend's speed options: refused in one line where they cannot run (CPU), and on a GPU the fast path
(fp16, channels-last, the fused attention kernel, a captured CUDA graph) keeps the detections of fp32 eager."""

import numpy as np
import pytest
import torch

from rgbir.cli.demo import DEMO_WEIGHTS
from rgbir.errors import RgbirError
from rgbir.models import build_model
from rgbir.runtime.backends import open_backend
from rgbir.runtime.backends.torch_backend import TorchBackend, TorchOptions


@pytest.mark.parametrize("options, message", [
    (dict(half=True), "--half works on a CUDA GPU only; on cpu leave it out"),
    (dict(cuda_graph=True, compile=True), "--cuda-graph, --compile work on a CUDA GPU only; on cpu leave them out"),
    (dict(attention="fast"), "--attention 'fast' is not one of auto, kernel, reference, upstream"),
    (dict(attention="kernel"), "--attention kernel runs on CUDA only"),
    (dict(gpu_preprocess=True), "--gpu-preprocess works on a CUDA GPU only"),
])
def test_gpu_options_on_a_cpu_are_one_line_errors(options, message):
    with pytest.raises(RgbirError, match=message):
        TorchBackend(build_model("yolo11n-mm-mid-msc", nc=2), "cpu", (64, 64), TorchOptions(**options))


def test_open_backend_routes_the_pytorch_options_and_refuses_them_elsewhere():
    with pytest.raises(RgbirError, match=r"--half \(PyTorch only\)"):
        open_backend("model.onnx", half=True)
    with pytest.raises(RgbirError, match="works on a CUDA GPU only"):
        open_backend("yolo11n-mm-mid", half=True)  # checked before the model is built
    backend = open_backend("yolo11n-mm-mid-msc", imgsz=(64, 64), attention="upstream")
    assert backend.options.attention == "upstream" and not backend.channels_last


def test_attention_choices_give_the_same_detections_on_a_cpu():
    from lively import lively

    model = lively(build_model("yolo11n-mm-mid-msc", nc=2)).eval()
    rgb, ir = np.random.default_rng(0).random((2, 1, 3, 96, 128), np.float32)
    outputs = {name: TorchBackend(model, "cpu", (96, 128), TorchOptions(attention=name)).infer(rgb, ir)["predictions"]
               for name in ("reference", "upstream")}
    np.testing.assert_allclose(outputs["reference"], outputs["upstream"], rtol=1e-4, atol=1e-3)


def demo_val_pairs(tmp_path):
    """The demo model's synthetic val scenes (160x192) as frame pairs."""
    import cv2

    from rgbir.data.dataset import load_dataset
    from rgbir.data.synthetic import SceneConfig, write_dataset
    from rgbir.runtime.frames import Frame, FramePair

    data = write_dataset(tmp_path, 0, 60, SceneConfig(size=(160, 192), seed=0))
    return [FramePair(0, Frame(cv2.imread(str(s.rgb)), i, 0.0, 0.0, "rgb"),
                      Frame(cv2.imread(str(s.ir)), i, 0.0, 0.0, "ir"))
            for i, s in enumerate(load_dataset(data, "val").samples)]


def detect(pairs, options: TorchOptions):
    """Each pair's detections (RGB boxes) by the demo model on the GPU with these options."""
    from rgbir.runtime.inference import DetectSettings, PairDetector
    from rgbir.runtime.postprocess import Detections

    backend = TorchBackend.from_file(str(DEMO_WEIGHTS), device="cuda", imgsz=(160, 192), options=options)
    results = PairDetector(backend, DetectSettings(conf=0.25))(pairs)
    return [Detections(np.array([d.box_rgb for d in r.detections]).reshape(-1, 4),
                       np.array([d.score for d in r.detections]), np.array([d.cls for d in r.detections]))
            for r in results]


def needs_gpu_and_demo():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: the fast path runs only there")
    if not DEMO_WEIGHTS.is_file():
        pytest.skip("the demo weights are not in this checkout")


@pytest.mark.gpu
def test_the_fast_path_keeps_the_detections_of_fp32_eager(tmp_path):
    """fp16 + channels-last + the kernel (when compiled) + a CUDA graph vs fp32 eager on the demo val set: >= 99% of
    the detections match at IoU >= 0.9 (issue 14's bar)."""
    from rgbir.runtime.postprocess import match_detections

    needs_gpu_and_demo()
    pairs = demo_val_pairs(tmp_path)
    eager, fast = detect(pairs, TorchOptions()), detect(pairs, TorchOptions(half=True, cuda_graph=True))
    agreement = match_detections(eager, fast, 0.9)
    assert agreement.reference > 0 and agreement.matched >= 0.99 * agreement.reference


@pytest.mark.gpu
def test_frames_letterboxed_on_the_gpu_give_the_host_paths_detections(tmp_path):
    """--gpu-preprocess: the plugin library's letterbox kernel (bit-exact with OpenCV in fp32) feeds the model the
    inputs the CPU path would, so fp32 detections are the same boxes (IoU >= 0.99)."""
    from rgbir.plugins import find_library
    from rgbir.runtime.postprocess import match_detections

    needs_gpu_and_demo()
    try:
        find_library()
    except RgbirError as e:
        pytest.skip(str(e))
    pairs = demo_val_pairs(tmp_path)
    host, device = detect(pairs, TorchOptions()), detect(pairs, TorchOptions(gpu_preprocess=True))
    agreement = match_detections(host, device, 0.99)
    assert agreement.reference > 0 and agreement.matched >= 0.995 * max(agreement.reference, agreement.candidate)
    graphed = detect(pairs, TorchOptions(gpu_preprocess=True, half=True, cuda_graph=True))
    assert match_detections(host, graphed, 0.9).matched >= 0.99 * agreement.reference
