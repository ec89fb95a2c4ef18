"""Decode + class-aware NMS appended to an exported graph: (B, 4+nc, A) → num_dets, boxes, scores, classes.

Same semantics as ``rgbir.runtime.postprocess`` (and upstream): each anchor keeps its best class, boxes are
suppressed only by boxes of the same class, the ``max_det`` highest scores are kept.

Built on ONNX NonMaxSuppression, which ONNX Runtime runs and TensorRT's parser maps to its INMSLayer, so
both give the same four outputs. Every K is a constant (TensorRT wants static TopK K): the candidate list is
padded with ``max_det`` empty slots before one TopK.
"""

from __future__ import annotations

import onnx
import onnx.inliner
from onnxscript import FLOAT, INT32, script
from onnxscript import opset18 as op
from onnxscript.values import Opset

from ..metadata import PostprocessSpec
from ..ops import MAX_WH

nms_opset = Opset("rgbir.nms", 1)
NMS_OUTPUTS = ("num_dets", "boxes", "scores", "classes")


@script(nms_opset, default_opset=op)
def DetectionNMS(predictions, max_det: int, iou_threshold: float, score_threshold: float):
    p = op.Cast(predictions, to=FLOAT.dtype)  # (B, 4+nc, A): cx, cy, w, h, class scores
    xywh = op.Transpose(op.Slice(p, op.Constant(value_ints=[0]), op.Constant(value_ints=[4]),
                                 op.Constant(value_ints=[1])), perm=[0, 2, 1])  # (B, A, 4)
    scores = op.Slice(p, op.Constant(value_ints=[4]), op.Constant(value_ints=[1 << 30]), op.Constant(value_ints=[1]))
    centre = op.Slice(xywh, op.Constant(value_ints=[0]), op.Constant(value_ints=[2]), op.Constant(value_ints=[2]))
    half = op.Mul(op.Slice(xywh, op.Constant(value_ints=[2]), op.Constant(value_ints=[4]),
                           op.Constant(value_ints=[2])), op.Constant(value_float=0.5))
    xyxy = op.Concat(op.Sub(centre, half), op.Add(centre, half), axis=2)  # (B, A, 4)
    # as upstream, each anchor keeps only its best class; offsetting boxes by class keeps NMS class-aware
    best = op.ReduceMax(scores, op.Constant(value_ints=[1]), keepdims=1)  # (B, 1, A)
    best_class = op.ArgMax(scores, axis=1, keepdims=0)  # (B, A)
    offset = op.Mul(op.Unsqueeze(op.Cast(best_class, to=FLOAT.dtype), op.Constant(value_ints=[2])),
                    op.Constant(value_float=MAX_WH))
    k = op.Reshape(op.Constant(value_int=max_det), op.Constant(value_ints=[1]))
    selected = op.NonMaxSuppression(op.Add(xyxy, offset), best, k, op.Constant(value_float=iou_threshold),
                                    op.Constant(value_float=score_threshold))  # (M, 3): batch, 0, anchor
    batch_of = op.Gather(selected, op.Constant(value_int=0), axis=1)
    box_of = op.Gather(selected, op.Constant(value_int=2), axis=1)
    batch_box = op.Concat(op.Unsqueeze(batch_of, op.Constant(value_ints=[1])),
                          op.Unsqueeze(box_of, op.Constant(value_ints=[1])), axis=1)  # (M, 2)
    picked_scores = op.GatherND(best, selected)  # (M,)
    picked_boxes = op.GatherND(xyxy, batch_box)  # (M, 4)
    class_of = op.GatherND(best_class, batch_box)  # (M,)
    batch_ids = op.Range(op.Constant(value_int=0), op.Squeeze(op.Shape(p, start=0, end=1)), op.Constant(value_int=1))
    mine = op.Equal(op.Unsqueeze(batch_ids, op.Constant(value_ints=[1])),
                    op.Unsqueeze(batch_of, op.Constant(value_ints=[0])))  # (B, M)
    empty = op.Constant(value_float=-1.0)
    candidates = op.Where(mine, op.Unsqueeze(picked_scores, op.Constant(value_ints=[0])), empty)
    padding = op.Expand(empty, op.Concat(op.Shape(p, start=0, end=1), k, axis=0))
    candidates = op.Concat(candidates, padding, axis=1)  # (B, M + max_det): K below is constant
    top_scores, top_index = op.TopK(candidates, k, axis=1, largest=1, sorted=1)  # (B, max_det)
    valid = op.Greater(top_scores, op.Constant(value_float=-0.5))
    index = op.Where(valid, top_index, op.Constant(value_int=0))  # padding slots point at entry 0, masked below
    # one zero row so that index 0 exists even when nothing was selected
    picked_boxes = op.Concat(picked_boxes, op.ConstantOfShape(op.Constant(value_ints=[1, 4])), axis=0)
    class_of = op.Concat(class_of, op.Constant(value_ints=[0]), axis=0)
    boxes = op.Where(op.Unsqueeze(valid, op.Constant(value_ints=[2])), op.Gather(picked_boxes, index, axis=0),
                     op.Constant(value_float=0.0))
    classes = op.Cast(op.Where(valid, op.Gather(class_of, index, axis=0), op.Constant(value_ints=[0])),
                      to=INT32.dtype)
    num_dets = op.ReduceSum(op.Cast(valid, to=INT32.dtype), op.Constant(value_ints=[1]), keepdims=1)
    out_scores = op.Where(valid, top_scores, op.Constant(value_float=0.0))
    return num_dets, boxes, out_scores, classes


def append_nms(model: onnx.ModelProto, spec: PostprocessSpec) -> None:
    """Replace the model's single predictions output by the four NMS outputs (standard ops, inlined)."""
    (prediction,) = [o.name for o in model.graph.output]
    fn = DetectionNMS.to_function_proto()
    model.functions.append(fn)
    model.opset_import.append(onnx.helper.make_opsetid(fn.domain, 1))
    node = onnx.helper.make_node(
        fn.name, [prediction], list(NMS_OUTPUTS), domain=fn.domain, name="postprocess_nms",
        max_det=int(spec.max_det), iou_threshold=float(spec.iou_threshold),
        score_threshold=float(spec.score_threshold),
    )
    model.graph.node.append(node)
    batch = model.graph.output[0].type.tensor_type.shape.dim[0]
    b = batch.dim_value or batch.dim_param or "batch"
    del model.graph.output[:]
    k = int(spec.max_det)
    model.graph.output.extend([
        onnx.helper.make_tensor_value_info("num_dets", onnx.TensorProto.INT32, [b, 1]),
        onnx.helper.make_tensor_value_info("boxes", onnx.TensorProto.FLOAT, [b, k, 4]),
        onnx.helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, [b, k]),
        onnx.helper.make_tensor_value_info("classes", onnx.TensorProto.INT32, [b, k]),
    ])
    inlined = onnx.inliner.inline_selected_functions(model, [(fn.domain, fn.name)], exclude=False)
    model.CopyFrom(inlined)
    kept = [o for o in model.opset_import if o.domain != fn.domain]
    del model.opset_import[:]
    model.opset_import.extend(kept)
