import numpy as np
import pytest
import yaml

from fakes import NumpyBackend
from rgbir.data.dataset import load_dataset
from rgbir.data.synthetic import NAMES, SceneConfig, scene, write_clip, write_dataset
from rgbir.errors import RgbirError
from rgbir.eval.validate import validate


def test_scenes_are_deterministic_and_the_modalities_disagree():
    cfg = SceneConfig(size=(128, 160), seed=5)
    a, b = scene(3, cfg), scene(3, cfg)
    np.testing.assert_array_equal(a.rgb, b.rgb)
    np.testing.assert_array_equal(a.ir, b.ir)
    assert a.ir.shape == (64, 80)  # lower IR resolution
    # warm objects are bright in IR; cold signs are at background temperature
    for i in range(12):
        s = scene(i, cfg)
        for o in s.objects:
            x1, y1, x2, y2 = (int(v * 0.5) for v in o.box)
            inside = s.ir[y1 + 1:y2 - 1, x1 + 1:x2 - 1].astype(float).mean()
            assert (inside > 90) == (o.cls in (0, 1)), (i, o.cls, inside)
    # at night warm objects vanish from RGB, signs stay visible
    night = next(scene(i, cfg) for i in range(3) if scene(i, cfg).condition == "night")
    day = next(scene(i, cfg) for i in range(3) if scene(i, cfg).condition == "day")
    assert night.rgb.mean() < 40 < day.rgb.mean()


def test_dataset_layout_round_trip(tmp_path):
    data = write_dataset(tmp_path / "syn", 4, 3, SceneConfig(size=(96, 128), misalignment=True))
    cfg = yaml.safe_load(data.read_text())
    assert cfg["modality"] == {"rgb": "images", "ir": "images_ir"} and "ir_to_rgb_homography" in cfg["synthetic"]
    ds = load_dataset(data, "val")
    assert ds.names == NAMES and len(ds.samples) == 3
    s = ds.samples[0]
    assert s.ir.parent.name == "val" and s.ir.parent.parent.name == "images_ir" and s.ir.stem == s.rgb.stem
    assert len(s.classes) == len(s.boxes) > 0 and (s.boxes > 0).all() and (s.boxes <= 1).all()


def test_llvip_layout_and_errors(tmp_path):
    root = tmp_path / "LLVIP"
    for d in ("visible/test", "infrared/test", "labels/test"):
        (root / d).mkdir(parents=True)
    import cv2
    cv2.imwrite(str(root / "visible/test/190001.jpg"), np.zeros((32, 32, 3), np.uint8))
    cv2.imwrite(str(root / "infrared/test/190001.jpg"), np.zeros((32, 32, 3), np.uint8))
    (root / "labels/test/190001.txt").write_text("0 0.5 0.5 0.2 0.4\n")
    data = tmp_path / "llvip.yaml"
    data.write_text(yaml.safe_dump({"path": str(root), "val": "visible/test", "names": ["person"],
                                    "modality": {"rgb": "visible", "ir": "infrared"}}))
    ds = load_dataset(data, "val")
    assert ds.samples[0].ir.parts[-3] == "infrared" and ds.samples[0].classes.tolist() == [0]
    (root / "infrared/test/190001.jpg").unlink()
    with pytest.raises(RgbirError, match="no IR image"):
        load_dataset(data, "val")
    with pytest.raises(RgbirError, match="'train' entry"):
        load_dataset(data, "train")


def test_validate_with_a_backend_and_blanking(tmp_path):
    data = write_dataset(tmp_path / "syn", 0, 4, SceneConfig(size=(64, 80)))
    result = validate(NumpyBackend(imgsz=(64, 80), nc=3), str(data))
    assert result.images == 4 and result.instances > 0 and 0 <= result.ap.map <= result.ap.map50 <= 1
    assert len(result.coco.images) == 4 and len(result.coco.annotations) == result.instances  # what was scored
    assert set(result.ms_per_image) == {"preprocess", "infer", "postprocess"}
    blanked = validate(NumpyBackend(imgsz=(64, 80), nc=3), str(data), blank="rgb")
    assert blanked.images == 4


def test_clip_for_the_runtime(tmp_path):
    import cv2
    rgb, ir = write_clip(tmp_path, frames=12, config=SceneConfig(size=(96, 128)))
    for path, size in ((rgb, (128, 96)), (ir, (64, 48))):
        cap = cv2.VideoCapture(str(path))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
        ok, frame = cap.read()
        assert ok and (frame.shape[1], frame.shape[0]) == size
