import copy

import pytest
import torch

from rgbir.errors import RgbirError
from rgbir.models import build_model
from rgbir.models.blocks import BN_EPS, C3k, C3k2, Conv
from rgbir.models.builder import CONFIG_DIR, resolve_config

MULTIMODAL_CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("yolo11-mm-*.yaml"))


def test_yolo11n_has_the_published_parameter_count():
    model = build_model("yolo11n.yaml")
    assert sum(p.numel() for p in model.parameters()) == 2_624_080
    assert model.stride.tolist() == [8.0, 16.0, 32.0]


def test_upstream_state_dict_keys_and_batchnorm_eps():
    model = build_model("yolo11n")
    keys = model.state_dict().keys()
    for key in ("model.0.conv.weight", "model.0.bn.running_var", "model.2.m.0.cv1.conv.weight",
                "model.10.m.0.attn.qkv.conv.weight", "model.10.m.0.attn.pe.bn.weight",
                "model.23.cv3.0.0.0.conv.weight", "model.23.cv2.2.2.bias", "model.23.dfl.conv.weight"):
        assert key in keys
    assert "model.23.stride" not in keys
    assert all(m.bn.eps == BN_EPS for m in model.modules() if isinstance(m, Conv))
    torch.testing.assert_close(model.state_dict()["model.23.dfl.conv.weight"].flatten(), torch.arange(16.0))


def test_scale_rules_c3k_and_depth():
    n, m = build_model("yolo11n"), build_model("yolo11m")
    assert isinstance(n.model[6].m[0], C3k) and isinstance(n.model[2].m[0], torch.nn.Module)
    assert not isinstance(n.model[2].m[0], C3k)  # 'False' in the YAML stays at scale n
    assert isinstance(m.model[2].m[0], C3k)  # forced True at m/l/x
    assert len(build_model("yolo11l").model[2].m) == 2 and len(n.model[2].m) == 1
    assert m.model[9].cv2.conv.out_channels == 512  # max_channels 512 at m


def test_output_contract_and_non_square_input():
    model = build_model("yolo11n-mm-mid", nc=5).eval()
    rgb, ir = torch.rand(2, 3, 512, 640), torch.rand(2, 3, 512, 640)
    with torch.no_grad():
        out = model(rgb, ir)
    assert out.shape == (2, 9, (64 * 80 + 32 * 40 + 16 * 20))
    boxes, scores = out[:, :4], out[:, 4:]
    assert scores.min() >= 0 and scores.max() <= 1
    assert boxes[:, 0].max() < 700 and boxes[:, 1].max() < 560  # x spans the width, y the height


def test_six_channel_input_equals_two_inputs():
    model = build_model("yolo11n-mm-mid").eval()
    rgb, ir = torch.rand(1, 3, 128, 96), torch.rand(1, 3, 128, 96)
    with torch.no_grad():
        torch.testing.assert_close(model(torch.cat((rgb, ir), 1)), model(rgb, ir))


def test_routing_sends_each_modality_to_its_backbone():
    model = build_model("yolo11n-mm-mid").eval()
    seen = {}
    model.model[0].register_forward_pre_hook(lambda m, a: seen.update(rgb=a[0]))
    model.model[11].register_forward_pre_hook(lambda m, a: seen.update(ir=a[0]))
    rgb, ir = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        model(rgb, ir)
    assert seen["rgb"] is rgb and seen["ir"] is ir


def test_single_channel_ir_and_dataset_xch():
    model = build_model("yolo11n-mm-mid-msc", ir_channels=1).eval()
    assert model.model[11].conv.in_channels == 1 and model.model[0].conv.in_channels == 3
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64)).shape[1] == 84
    cfg, _ = resolve_config("yolo11-mm-mid")
    cfg["dataset_config"] = {"Xch": 1}
    assert build_model(cfg).ir_channels == 1


def test_dual_route_reads_the_concatenation():
    cfg, _ = resolve_config("yolo11")
    cfg["backbone"][0] = [-1, 1, "Conv", [64, 3, 2], "Dual"]
    model = build_model(cfg, scale="n")
    assert model.multimodal and model.model[0].conv.in_channels == 6


def test_bad_inputs_give_clear_errors():
    model = build_model("yolo11n-mm-mid")
    with pytest.raises(RgbirError, match="ir"):
        model(torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64))
    with pytest.raises(RgbirError, match="6 channels"):
        model(torch.rand(1, 4, 64, 64))


def test_config_errors_name_the_problem():
    cfg, _ = resolve_config("yolo11")
    bad = copy.deepcopy(cfg)
    bad["backbone"][3] = [-1, 1, "FancyConv", [256, 3, 2]]
    bad["head"][0] = [-1, 1, "Mystery", []]
    with pytest.raises(RgbirError, match="FancyConv, Mystery"):
        build_model(bad)
    bad = copy.deepcopy(cfg)
    bad["backbone"][0] = [-1, 1, "Conv", [64, 3, 2], "Thermal"]
    with pytest.raises(RgbirError, match="route 'Thermal'"):
        build_model(bad)
    with pytest.raises(RgbirError, match="scale 'q'"):
        build_model("yolo11", scale="q")
    with pytest.raises(RgbirError, match="no model config"):
        build_model("yolo99-nothing")


def test_yaml_activation():
    cfg, _ = resolve_config("yolo11")
    cfg["activation"] = "nn.LeakyReLU(0.1)"
    model = build_model(cfg, scale="n")
    assert isinstance(model.model[0].act, torch.nn.LeakyReLU) and model.model[0].act.negative_slope == 0.1


@pytest.mark.slow
@pytest.mark.parametrize("config", ["yolo11", *MULTIMODAL_CONFIGS])
@pytest.mark.parametrize("scale", list("nslmx"))
def test_every_shipped_config_builds_and_runs_at_every_scale(config, scale):
    model = build_model(config, scale=scale, nc=3).eval()
    rgb = torch.rand(1, 3, 64, 96)
    ir = torch.rand(1, 3, 64, 96) if model.multimodal else None
    with torch.no_grad():
        out = model(rgb, ir)
    assert out.shape == (1, 7, 8 * 12 + 4 * 6 + 2 * 3)
    assert torch.isfinite(out).all()
    assert isinstance(model.model[2], C3k2) and model.model[2].m[0].__class__.__name__ == (
        "C3k" if scale in "mlx" else "Bottleneck")
