"""Triton Python-backend model: one pair of raw 8-bit frames (H x W x 3 BGR, or H x W x 1 grey) → the network's
inputs and each frame's letterbox (scale, pad left, pad top), made by ``rgbir.runtime.preprocess`` itself, so a
server letterboxes exactly as ``rgbir run`` does (one implementation, not a copy that could drift). The server's
Python environment needs rgbir (its runtime: numpy and OpenCV; no torch)."""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from rgbir.metadata import ModelMetadata
from rgbir.runtime.preprocess import preprocess_pair
from rgbir.triton_contract import FRAME_SUFFIX, LETTERBOX_SUFFIX, METADATA_PARAMETER


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.meta = ModelMetadata.from_json(config["parameters"][METADATA_PARAMETER]["string_value"])
        self.modalities = self.meta.modality_order  # rgb[, ir]

    def execute(self, requests):
        return [self._pair(r) for r in requests]

    def _pair(self, request):
        try:
            frames = [pb_utils.get_input_tensor_by_name(request, m + FRAME_SUFFIX).as_numpy() for m in self.modalities]
            frames = [f[..., 0] if f.ndim == 3 and f.shape[2] == 1 else f for f in frames]  # grey as OpenCV has it
            arrays, infos = preprocess_pair(frames[0], frames[1] if len(frames) > 1 else None, self.meta,
                                            self.meta.input_dtype)
        except Exception as e:  # a wrong frame fails its own request only
            return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(e)))
        tensors = [pb_utils.Tensor(m, a) for m, a in zip(self.modalities, arrays)]
        tensors += [pb_utils.Tensor(m + LETTERBOX_SUFFIX, np.array([i.scale, i.pad_left, i.pad_top], np.float32))
                    for m, i in zip(self.modalities, infos)]
        return pb_utils.InferenceResponse(tensors)
