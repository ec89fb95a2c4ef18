"""Options defined once: each options dataclass adds its own flags, reads the given ones back, and its help shows
the field's own default and choices."""

import argparse

import pytest

from rgbir.errors import RgbirError
from rgbir.runtime.config import PipelineConfig, SinkConfig
from rgbir.trt import BatchProfile, EngineOptions


def parser_for(*classes):
    parser = argparse.ArgumentParser()
    for cls in classes:
        cls.add_arguments(parser)
    return parser


def test_help_takes_defaults_and_choices_from_the_fields():
    help_text = " ".join(parser_for(EngineOptions).format_help().split())
    assert "--calib-images CALIB_IMAGES at most this many calibration pairs, spread over the set (default: 512)" \
        in help_text
    assert "--precision auto|fp32|fp16|int8" in help_text and "(default: auto)" in help_text


def test_only_given_flags_are_read_back_and_parsed():
    args = parser_for(EngineOptions).parse_args(["--batch", "1,2,8", "--version-compatible"])
    assert EngineOptions.given(args) == {"batch": BatchProfile(1, 2, 8), "version_compatible": True}
    options = EngineOptions.from_args(args)
    assert options.precision == "auto" and options.calibration_images == 512  # the dataclass's defaults
    args = parser_for(PipelineConfig, SinkConfig).parse_args(["--model", "m.onnx", "--imgsz", "512,640",
                                                              "--classes", "0", "2", "--mjpeg", "8080"])
    assert PipelineConfig.given(args) == {"model": "m.onnx", "imgsz": (512, 640), "classes": [0, 2]}
    assert SinkConfig.given(args) == {"mjpeg_port": 8080}


@pytest.mark.parametrize("argv, message", [
    (["--workspace", "lots"], "--workspace takes whole numbers, got 'lots'"),
    (["--batch", "1,2"], "is not N or MIN,OPT,MAX"),
])
def test_a_value_its_parser_refuses_is_one_error_naming_the_flag(argv, message):
    with pytest.raises(RgbirError, match=message):
        EngineOptions.given(parser_for(EngineOptions).parse_args(argv))
