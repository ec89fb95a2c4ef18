import sys

import pytest
import torch
from torch import nn

from rgbir.errors import RgbirError
from rgbir.models import build_model, load, save
from rgbir.models.checkpoint import read_pickled
from upstream_layout import save_upstream_checkpoint


def _inputs(model, h=128, w=160):
    ir = torch.rand(1, model.ir_channels, h, w) if model.multimodal else None
    return torch.rand(1, 3, h, w), ir


def _fp16_reference(model):
    """What the upstream checkpoint holds: FP16 weights; compared in float32."""
    return model.half().float().eval()


@pytest.mark.parametrize("config", ["yolo11n", "yolo11n-mm-mid-msc", "yolo11n-mm-mid-tssa"])
def test_upstream_checkpoint_loads_without_ultralytics(tmp_path, config):
    source = build_model(config, names=["person", "car", "bicycle"])
    path = save_upstream_checkpoint(source, tmp_path / "best.pt")
    assert "ultralytics" not in sys.modules
    model = load(path)
    assert "ultralytics" not in sys.modules
    assert model.names == {0: "person", 1: "car", 2: "bicycle"} and model.nc == 3
    assert model.checkpoint.format == "ultralytics" and model.checkpoint.upstream_version == "8.3.163"
    assert model.checkpoint.channel_order == ({"rgb": "BGR", "ir": "BGR"} if model.multimodal else {"rgb": "RGB"})
    reference = _fp16_reference(source)
    rgb, ir = _inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(model(rgb, ir), reference(rgb, ir), atol=0, rtol=0)


def test_upstream_checkpoint_is_pickled_like_ultralytics(tmp_path):
    path = save_upstream_checkpoint(build_model("yolo11n-mm-mid-msc"), tmp_path / "best.pt")
    names = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    assert {"ultralytics.nn.tasks.DetectionModel", "ultralytics.nn.modules.block.C3k2",
            "ultralytics.nn.modules.fusion.msc.MSC", "ultralytics.nn.mm.router.MultiModalRouter"} <= names


def test_module_details_missing_from_the_state_dict_are_taken_from_the_checkpoint(tmp_path):
    source = build_model("yolo11n")
    source.model[9].cv1.act = nn.Identity()  # ultralytics 8.4.0: SPPF.cv1 without activation
    path = save_upstream_checkpoint(source, tmp_path / "sppf.pt")
    model = load(path)
    assert isinstance(model.model[9].cv1.act, nn.Identity) and isinstance(model.model[9].cv2.act, nn.SiLU)
    rgb, _ = _inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(model(rgb), _fp16_reference(source)(rgb), atol=0, rtol=0)


def test_original_mscn_variant_without_qkv_bias(tmp_path):
    source = build_model("yolo11n-mm-mid-msc")
    for i in (22, 23):
        for name in ("q", "kv"):
            getattr(source.model[i], name).register_parameter("bias", None)
    model = load(save_upstream_checkpoint(source, tmp_path / "mscn.pt"))
    assert model.model[22].q.bias is None and model.model[22].proj.bias is not None
    rgb, ir = _inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(model(rgb, ir), _fp16_reference(source)(rgb, ir), atol=0, rtol=0)


def test_unknown_module_classes_are_all_listed(tmp_path):
    path = save_upstream_checkpoint(
        build_model("yolo11n"), tmp_path / "custom.pt",
        extra_modules={"4.m.0": ("ultralytics.nn.modules.block", "FancyBlock"),
                       "6.m.0": ("ultralytics.nn.extra.attention", "SecretAttention")},
    )
    with pytest.raises(RgbirError) as err:
        load(path)
    message = str(err.value)
    assert "ultralytics.nn.modules.block.FancyBlock" in message
    assert "ultralytics.nn.extra.attention.SecretAttention" in message


def test_unpickling_runs_no_code_from_the_file(tmp_path, capsys):
    class Boom:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / "evil.pt"
    torch.save({"model": Boom()}, path)
    ckpt = read_pickled(path)  # 'builtins.print' becomes an inert stand-in; nothing is printed
    assert type(ckpt["model"]).__name__ == "print"
    with pytest.raises(RgbirError, match="not a detector checkpoint"):
        load(path)
    assert "must never run" not in capsys.readouterr().out


def test_state_dict_files_need_a_config(tmp_path):
    source = build_model("yolo11n-mm-mid", nc=2)
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    with pytest.raises(RgbirError, match="--cfg"):
        load(path)
    model = load(path, cfg="yolo11n-mm-mid", nc=2)
    assert model.checkpoint.format == "state_dict"
    rgb, ir = _inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(model(rgb, ir), source.eval()(rgb, ir))
    with pytest.raises(RgbirError, match="do not match"):
        load(path, cfg="yolo11n-mm-mid", nc=7)


def test_rgbir_safetensors_round_trip_keeps_yaml_names_and_details(tmp_path):
    source = build_model("yolo11n-mm-mid-msc", names=["a", "b"], ir_channels=1)
    source.model[9].cv1.act = nn.Identity()
    source = load(save_upstream_checkpoint(source, tmp_path / "up.pt"))
    path = save(source, tmp_path / "model.safetensors", meta={"note": "test"})
    model = load(path)
    assert model.checkpoint.format == "rgbir" and model.names == {0: "a", 1: "b"} and model.ir_channels == 1
    assert model.checkpoint.channel_order == {"rgb": "BGR", "ir": "BGR"}  # carried from the source checkpoint
    assert model.checkpoint.extra["note"] == "test"
    assert isinstance(model.model[9].cv1.act, nn.Identity)
    rgb, ir = _inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(model(rgb, ir), source(rgb, ir), atol=0, rtol=0)


def test_unreadable_files_give_one_line_errors(tmp_path):
    with pytest.raises(RgbirError, match="no such weights file"):
        load(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(RgbirError, match="not a torch zip checkpoint"):
        load(junk)
