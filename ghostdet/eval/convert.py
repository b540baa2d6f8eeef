"""Model output -> COCO results: letterboxed input pixels back to original pixels, xyxy -> xywh, class -> category id."""
from __future__ import annotations

from typing import Sequence

import torch
from torchvision.ops import box_convert

from ghostdet.data.letterbox import unletterbox_boxes
from ghostdet.utils.errors import DataError


def predictions_to_coco(
    predictions: Sequence[dict],
    metas: Sequence[dict],
    category_ids: Sequence[int] | None = None,
) -> list[dict]:
    """COCO result dicts ``{image_id, category_id, bbox [x, y, w, h], score}`` for a batch of predictions.

    Args:
        predictions: per image ``{"boxes": (n, 4) xyxy in letterboxed input pixels, "scores": (n,),
            "labels": (n,) contiguous class indices}`` (``model.predict`` output).
        metas: per image ``{"image_id", "orig_size": (h, w), "ratio", "pad": (left, top)}`` (the
            loader's metas): the boxes are mapped back with ``unletterbox_boxes`` and clipped to the image.
        category_ids: the category id of each class index (``category_ids[label]``). ``None`` means
            the identity: category_id = class index (use ``resolve_category_ids`` to get the list for a
            ground truth).

    Boxes are rounded to 1e-3 px and scores to 1e-5 (smaller JSON; far below any effect on AP).
    """
    if len(predictions) != len(metas):
        raise ValueError(f"{len(predictions)} predictions for {len(metas)} images")
    results = []
    for pred, meta in zip(predictions, metas):
        boxes = torch.as_tensor(pred["boxes"], dtype=torch.float32).detach().cpu().reshape(-1, 4)
        if not len(boxes):
            continue
        # rounded as whole tensors (in float64, so 12.345 stays 12.345): per-value round() was 15 % of an
        # evaluation at conf 0.001
        scores = torch.as_tensor(pred["scores"]).detach().cpu().double().round(decimals=5).tolist()
        labels = torch.as_tensor(pred["labels"]).detach().cpu().long().tolist()
        boxes = unletterbox_boxes(boxes, meta["ratio"], meta["pad"], tuple(meta["orig_size"]))
        xywh = box_convert(boxes, "xyxy", "xywh").double().round(decimals=3).tolist()
        image_id = meta["image_id"]
        image_id = image_id.item() if isinstance(image_id, torch.Tensor) else image_id  # preserved as given
        for box, score, label in zip(xywh, scores, labels):
            if category_ids is None:
                category_id = label
            else:
                if not 0 <= label < len(category_ids):
                    raise DataError(
                        f"predicted class {label} has no category id ({len(category_ids)} given); "
                        "the model's classes do not match the dataset's"
                    )
                category_id = int(category_ids[label])
            results.append({
                "image_id": image_id,
                "category_id": category_id,
                "bbox": box,
                "score": score,
            })
    return results
