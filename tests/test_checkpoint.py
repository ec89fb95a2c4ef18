import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

from rgbir.cli.common import load_model
from rgbir.cli.main import build_parser
from rgbir.errors import RgbirError
from rgbir.models import CheckpointWarning, build_model, load, save
from rgbir.models.checkpoint import head_classes, read_pickled
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
    with pytest.raises(RgbirError, match="head has 2 classes, not 7"):
        load(path, cfg="yolo11n-mm-mid", nc=7)
    assert load(path, cfg="yolo11n-mm-mid").nc == 2  # the class count comes from the weights, not the config's 80
    assert load(path, cfg="yolo11n-mm-mid", names=["a", "b"]).names == {0: "a", 1: "b"}
    with pytest.raises(RgbirError, match="has 3 entries but weights.pt's head has 2 classes"):
        load(path, cfg="yolo11n-mm-mid", names=["a", "b", "c"])


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


def _load_warned(path, **kwargs):
    """load() and the CheckpointWarning messages it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load(path, **kwargs)
    return model, [str(w.message) for w in caught if issubclass(w.category, CheckpointWarning)]


@pytest.fixture(scope="module")
def two_class_model():
    return build_model("yolo11n", nc=2)


@pytest.mark.parametrize("stored,names,warning", [
    ({i: f"class{i}" for i in range(80)}, {0: "class0", 1: "class1"},
     "names has 80 entries but the head has 2 classes: kept the first 2"),
    ({0: "person"}, {0: "person", 1: "class1"}, "names has 1 entry but the head has 2 classes: padded with class1"),
    (["person", "car", "dog"], {0: "person", 1: "car"},
     "names has 3 entries but the head has 2 classes: kept the first 2"),
    (["person", "car"], {0: "person", 1: "car"}, None),
    ({"0": "person", "1": "car"}, {0: "person", 1: "car"}, None),
    (None, {0: "class0", 1: "class1"}, None),
])
def test_class_names_are_fitted_to_the_head(tmp_path, two_class_model, stored, names, warning):
    source = two_class_model
    model, warned = _load_warned(save_upstream_checkpoint(source, tmp_path / "best.pt", names=stored))
    assert model.nc == 2 and model.names == names and model.yaml["nc"] == 2
    assert warned == ([f"best.pt: {warning}"] if warning else [])
    rgb, _ = _inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(model(rgb), _fp16_reference(source)(rgb), atol=0, rtol=0)


def test_the_head_decides_when_the_yaml_nc_disagrees(tmp_path, two_class_model):
    source = build_model(two_class_model.yaml)
    source.yaml["nc"] = 80
    model, warned = _load_warned(save_upstream_checkpoint(source, tmp_path / "best.pt", names=["a", "b"]))
    assert model.nc == 2 and model.yaml["nc"] == 2 and model.names == {0: "a", 1: "b"}
    assert warned == ["best.pt: its YAML says nc=80 but its head has 2 classes: built 2"]


def test_nc_and_names_options_on_a_checkpoint(tmp_path, two_class_model):
    path = save_upstream_checkpoint(two_class_model, tmp_path / "best.pt", names={i: f"c{i}" for i in range(80)})
    with pytest.raises(RgbirError, match=r"best.pt's head has 2 classes, not 5: leave out --nc"):
        load(path, nc=5)
    model, warned = _load_warned(path, nc=2)  # --nc that matches the weights is accepted
    assert model.nc == 2 and warned == ["best.pt: names has 80 entries but the head has 2 classes: kept the first 2"]
    model, warned = _load_warned(path, names=["a", "b"])  # replaced names need no fitting: no warning
    assert model.names == {0: "a", 1: "b"} and warned == []
    assert load(path, names={1: "y", 0: "x"}).names == {0: "x", 1: "y"}
    with pytest.raises(RgbirError, match=r"names \(--names\) has 1 entry but best.pt's head has 2 classes"):
        load(path, names=["a"])
    with pytest.raises(RgbirError, match="indexed 0-1"):
        load(path, names={1: "a", 2: "b"})


def test_names_option_on_rgbir_safetensors(tmp_path, two_class_model):
    path = save(two_class_model, tmp_path / "model.safetensors")
    assert load(path, names=["a", "b"]).names == {0: "a", 1: "b"}
    with pytest.raises(RgbirError, match="has 3 entries but model.safetensors's head has 2 classes"):
        load(path, names=["a", "b", "c"])


def test_names_and_nc_must_agree_for_a_config():
    assert build_model("yolo11n", names=["a", "b", "c"]).nc == 3  # names size the head
    with pytest.raises(RgbirError, match=r"has 2 entries but nc \(--nc\) is 5"):
        build_model("yolo11n", nc=5, names=["a", "b"])
    with pytest.raises(RgbirError, match="class names must be a list or an"):
        build_model("yolo11n", names={"person": 0})


def test_a_head_whose_levels_disagree_is_reported(two_class_model):
    state = dict(two_class_model.state_dict())
    assert head_classes(state, "x.pt") == 2
    state["model.23.cv3.1.2.weight"] = torch.zeros(3, 64, 1, 1)
    with pytest.raises(RgbirError, match="x.pt is damaged: its head's class convs disagree \\(2 vs 3 classes\\)"):
        head_classes(state, "x.pt")
    assert head_classes({"model.0.conv.weight": torch.zeros(16, 3, 3, 3)}, "x.pt") is None


@pytest.fixture(scope="module")
def yolomm_80_names(tmp_path_factory):
    """The reported file: a YOLOMM checkpoint, 2 classes in its YAML and head, 80 default names."""
    path = tmp_path_factory.mktemp("issue13") / "best.pt"
    return save_upstream_checkpoint(build_model("yolo11n-mm-mid", nc=2), path,
                                    names={i: f"class{i}" for i in range(80)})


def _rgbir(*args):
    return subprocess.run([sys.executable, "-m", "rgbir", *args], capture_output=True, text=True, timeout=300)


def test_cli_info_loads_a_checkpoint_whose_names_outnumber_its_classes(yolomm_80_names):
    result = _rgbir("info", str(yolomm_80_names), "--brief")
    assert result.returncode == 0, result.stderr
    assert "2 classes; output (B,6,anchors)" in result.stdout
    assert result.stderr.strip().splitlines() == [
        "warning: best.pt: names has 80 entries but the head has 2 classes: kept the first 2"]


def test_cli_nc_that_contradicts_the_weights_is_a_one_line_error(yolomm_80_names):
    result = _rgbir("info", str(yolomm_80_names), "--brief", "--nc", "5")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [(
        "rgbir info: error: best.pt's head has 2 classes, not 5: leave out --nc (a weights file's class count "
        "comes from its weights)")]


def test_cli_names_option_replaces_the_class_names(yolomm_80_names, tmp_path):
    result = _rgbir("info", str(yolomm_80_names), "--brief", "--names", "a,b")
    assert result.returncode == 0 and result.stderr == "", result.stderr  # nothing left to fit: no warning
    parse = build_parser().parse_args
    assert load_model(parse(["info", str(yolomm_80_names), "--names", "a,b"])).names == {0: "a", 1: "b"}
    data = tmp_path / "data.yaml"
    data.write_text("path: .\nval: images/val\nnames:\n  0: person\n  1: car\n")
    assert load_model(parse(["info", str(yolomm_80_names), "--names", str(data)])).names == {0: "person", 1: "car"}
    assert load_model(parse(["info", "yolo11n", "--names", "a,b,c"])).nc == 3
    with pytest.raises(RgbirError, match="has 3 entries but best.pt's head has 2 classes"):
        load_model(parse(["info", str(yolomm_80_names), "--names", "a,b,c"]))
