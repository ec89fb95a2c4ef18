"""The wire contract of an rgbir model in Triton Inference Server, shared by the repository writer
(``rgbir.serve.triton_repo``) and the ``triton://`` backend (``rgbir.runtime.backends.triton_backend``): the config
parameters that carry the rgbir metadata, the ensemble's frame and letterbox tensor names, and the tensors an
export declares. Below both, so that neither imports the other."""

from __future__ import annotations

from dataclasses import dataclass

from .metadata import ModelMetadata

METADATA_PARAMETER = "rgbir"  # the whole ModelMetadata JSON
INPUTS_PARAMETER = "rgbir_inputs"  # "frames" on the ensemble: it takes raw 8-bit frames, not network inputs
FRAME_SUFFIX, LETTERBOX_SUFFIX = "_frame", "_letterbox"  # ensemble I/O per modality: rgb_frame, rgb_letterbox


@dataclass(frozen=True)
class Tensor:
    """One tensor of a model config: numpy dtype name and dims without the batch dimension (-1: any size)."""

    name: str
    dtype: str
    dims: tuple[int, ...]


def network_tensors(meta: ModelMetadata) -> tuple[list[Tensor], list[Tensor]]:
    """The inputs and outputs an rgbir export declares (without batch): rgb/ir in the I/O dtype; predictions
    (4+nc, anchors) in the I/O dtype, or the NMS outputs (int32 counts and classes, float32 boxes and scores)."""
    h, w = meta.imgsz
    io = meta.input_dtype.name
    inputs = [Tensor(s.name, io, (s.channels, h, w)) for s in meta.inputs]
    if meta.postprocess.kind == "nms":
        k = meta.postprocess.max_det
        return inputs, [Tensor("num_dets", "int32", (1,)), Tensor("boxes", "float32", (k, 4)),
                        Tensor("scores", "float32", (k,)), Tensor("classes", "int32", (k,))]
    anchors = sum((h // int(s)) * (w // int(s)) for s in meta.strides)
    return inputs, [Tensor("predictions", io, (4 + meta.nc, anchors))]
