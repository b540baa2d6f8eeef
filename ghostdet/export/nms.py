"""Class-aware NMS inside the exported graph (``tools/export.py --nms``), so an edge app needs no post-processing.

The graph ``images -> decode -> clip to the input -> NMS`` ends in four fixed-shape outputs, the convention of
TensorRT's EfficientNMS plugin (and of "end2end" YOLO exports)::

    num_dets     B x 1            int32    detections kept per image (0..max_det)
    det_boxes    B x max_det x 4  float32  xyxy in input pixels (of the letterboxed input), clipped to it
    det_scores   B x max_det      float32  descending per image
    det_classes  B x max_det      int32    class index 0..nc-1

Row ``j < num_dets[b]`` of image ``b`` is a detection; the rows after it are padding (boxes and scores 0, class -1).
The result is ``ghostdet.models.postprocess.postprocess(boxes, scores, conf, iou, max_det)`` (one label per anchor,
its best class; candidates with score > conf; NMS per class at IoU > iou; the max_det highest scores), with ``conf``,
``iou`` and ``max_det`` fixed at export time.

In ONNX it is ``NonMaxSuppression`` on per-class scores (B x C x N, so NMS is class-aware natively; each anchor keeps
only its best class's score), then ``ScatterND`` of the kept scores into a B x (N + max_det) table and ``TopK``
(max_det) over it, ``GatherND``/``GatherElements`` for boxes and classes. In PyTorch it is a custom op
(``torch.ops.ghostdet.end2end_nms``) whose eager kernel is ``postprocess`` itself; the exporter (``torch.export``-based,
``dynamo=True``) translates it with ``ONNX_TRANSLATION``. OpenVINO converts the same graph (its NonMaxSuppression,
TopK, ScatterND, GatherND).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.ops import clip_boxes_to_image

from ghostdet.utils.exported import NMS_OUTPUT_NAMES
from ghostdet.utils.errors import ConfigError

__all__ = ["EndToEndNMS", "NMS_OUTPUT_NAMES", "ONNX_TRANSLATION", "check_nms_settings", "end2end_nms"]


def check_nms_settings(conf: float, iou: float, max_det: int) -> None:
    """ConfigError unless 0 <= conf < 1, 0 <= iou <= 1 and max_det >= 1."""
    if not 0 <= conf < 1:
        raise ConfigError(f"--conf {conf}: the score threshold baked into the NMS graph must be in [0, 1)")
    if not 0 <= iou <= 1:
        raise ConfigError(f"--iou {iou}: the NMS IoU threshold must be in [0, 1]")
    if int(max_det) < 1:
        raise ConfigError(f"--max-det {max_det}: must be >= 1")


@torch.library.custom_op("ghostdet::end2end_nms", mutates_args=())
def end2end_nms(boxes: torch.Tensor, scores: torch.Tensor, conf: float, iou: float,
                max_det: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decoded ``boxes`` B x N x 4 / ``scores`` B x N x C -> (num_dets, det_boxes, det_scores, det_classes), padded."""
    from ghostdet.models.postprocess import postprocess

    b = boxes.shape[0]
    num = torch.zeros(b, 1, dtype=torch.int32, device=boxes.device)
    out_boxes, out_scores = boxes.new_zeros(b, max_det, 4), scores.new_zeros(b, max_det)
    out_classes = torch.full((b, max_det), -1, dtype=torch.int32, device=boxes.device)
    for i, found in enumerate(postprocess(boxes, scores, conf, iou, max_det)):
        k = len(found["scores"])
        num[i, 0] = k
        out_boxes[i, :k], out_scores[i, :k], out_classes[i, :k] = found["boxes"], found["scores"], found["labels"].int()
    return num, out_boxes, out_scores, out_classes


@end2end_nms.register_fake
def _end2end_nms_fake(boxes, scores, conf, iou, max_det):
    b = boxes.shape[0]
    return (boxes.new_empty(b, 1, dtype=torch.int32), boxes.new_empty(b, max_det, 4), scores.new_empty(b, max_det),
            boxes.new_empty(b, max_det, dtype=torch.int32))


def _end2end_nms_onnx(boxes, scores, conf: float, iou: float, max_det: int):
    """ONNX Script translation of ``end2end_nms`` (traced by the exporter into plain opset-18 nodes)."""
    from onnxscript import opset18 as op

    int32 = 6  # onnx.TensorProto.INT32
    axis_last = op.Constant(value_ints=[-1])
    zero = op.CastLike(op.Constant(value_float=0.0), scores)
    labels = op.ArgMax(scores, axis=-1, keepdims=0)                                    # B x N: the best class
    classes = op.Range(op.Constant(value_int=0), op.Squeeze(op.Shape(scores, start=2, end=3)), op.Constant(value_int=1))
    best_only = op.Where(op.Equal(op.Unsqueeze(labels, axis_last), classes), scores, zero)
    per_class = op.Transpose(best_only, perm=[0, 2, 1])                                # B x C x N
    selected = op.NonMaxSuppression(boxes, per_class, op.Constant(value_ints=[int(max_det)]),
                                    op.Constant(value_floats=[float(iou)]), op.Constant(value_floats=[float(conf)]))
    kept_scores = op.GatherND(per_class, selected)                                     # K
    image_anchor = op.Gather(selected, op.Constant(value_ints=[0, 2]), axis=1)         # K x 2: (image, anchor)
    # one row per image holding the kept scores at their anchors (each anchor has one class, so no collisions),
    # -1 elsewhere; max_det extra columns so that TopK(max_det) is defined whatever the anchor count
    table_shape = op.Add(op.Shape(boxes, start=0, end=2), op.Constant(value_ints=[0, int(max_det)]))
    table = op.Expand(op.CastLike(op.Constant(value_float=-1.0), scores), table_shape)
    table = op.ScatterND(table, image_anchor, kept_scores)
    top_scores, top_index = op.TopK(table, op.Constant(value_ints=[int(max_det)]), axis=-1, largest=1, sorted=1)
    valid = op.Greater(top_scores, op.CastLike(op.Constant(value_float=-0.5), scores))   # B x max_det
    num_dets = op.ReduceSum(op.Cast(valid, to=int32), op.Constant(value_ints=[1]), keepdims=1)
    index = op.Where(valid, top_index, op.Constant(value_int=0))
    det_boxes = op.GatherND(boxes, op.Unsqueeze(index, axis_last), batch_dims=1)
    det_boxes = op.Where(op.Unsqueeze(valid, axis_last), det_boxes, zero)
    det_scores = op.Where(valid, top_scores, zero)
    det_classes = op.Cast(op.Where(valid, op.GatherElements(labels, index, axis=1), op.Constant(value_int=-1)), to=int32)
    return num_dets, det_boxes, det_scores, det_classes


ONNX_TRANSLATION = {torch.ops.ghostdet.end2end_nms.default: _end2end_nms_onnx}  # custom_translation_table


class EndToEndNMS(nn.Module):
    """The deployable graph with NMS: ``images -> (num_dets, det_boxes, det_scores, det_classes)``.

    ``model`` is the fused detector; its decoded boxes are clipped to the input (as ``Detector.predict`` does) and
    cast to float32 (ONNX NonMaxSuppression takes float boxes only, also for an FP16 export)."""

    def __init__(self, model: nn.Module, conf: float = 0.25, iou: float = 0.45, max_det: int = 300):
        super().__init__()
        check_nms_settings(conf, iou, max_det)
        self.model = model
        self.conf, self.iou, self.max_det = float(conf), float(iou), int(max_det)

    def forward(self, images: torch.Tensor):
        boxes, scores = self.model.decode(self.model(images))
        boxes = clip_boxes_to_image(boxes.float(), (images.shape[-2], images.shape[-1]))
        return end2end_nms(boxes, scores.float(), self.conf, self.iou, self.max_det)
