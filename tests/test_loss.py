"""Box encoding, task-aligned assignment and the detection loss, on hand-made cases."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from ghostdet.models.boxes import aligned_box_iou, bbox2dist, dist2bbox, make_anchors
from ghostdet.models.detector import GhostYOLO
from ghostdet.models.layers import ConvBNAct
from ghostdet.models.loss import DetectionLoss, TaskAlignedAssigner, pad_targets
from ghostdet.utils.errors import DataError


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class TinyBackbone(nn.Module):
    """Stand-in feature extractor: three maps at strides 8/16/32."""

    def __init__(self):
        super().__init__()
        self.c3 = nn.Sequential(ConvBNAct(3, 8, 3, 2), ConvBNAct(8, 16, 3, 2), ConvBNAct(16, 16, 3, 2))
        self.c4 = ConvBNAct(16, 24, 3, 2)
        self.c5 = ConvBNAct(24, 32, 3, 2)
        self.out_channels = [16, 24, 32]

    def forward(self, x):
        c3 = self.c3(x)
        c4 = self.c4(c3)
        return [c3, c4, self.c5(c4)]


def tiny_detector(num_classes=3):
    return GhostYOLO(TinyBackbone(), num_classes=num_classes, neck_channels=16, head_convs=1)


# ---------------------------------------------------------------- boxes
def test_make_anchors_order_and_centres():
    points, strides = make_anchors([(2, 3), (1, 2)], [8, 16])
    assert points.shape == (8, 2) and strides.shape == (8, 1)
    # row-major per level, cell centres in grid units
    assert points[:3].tolist() == [[0.5, 0.5], [1.5, 0.5], [2.5, 0.5]]
    assert points[3].tolist() == [0.5, 1.5]
    assert (points * strides)[6:].tolist() == [[8.0, 8.0], [24.0, 8.0]]
    assert strides.squeeze(1).tolist() == [8.0] * 6 + [16.0] * 2


def test_box_distance_round_trip():
    points = torch.rand(50, 2) * 40
    dist = torch.rand(50, 4) * 10
    boxes = dist2bbox(dist, points)
    assert torch.all(boxes[:, 2:] >= boxes[:, :2])
    torch.testing.assert_close(bbox2dist(points, boxes), dist)
    # clamping at the largest representable DFL distance
    assert bbox2dist(points, boxes, max_dist=3.0).max() <= 3.0


def test_aligned_iou_matches_torchvision():
    from torchvision.ops import box_iou

    a = torch.tensor([[0.0, 0, 10, 10], [5, 5, 15, 25], [0, 0, 1, 1]])
    b = torch.tensor([[5.0, 5, 15, 15], [5, 5, 15, 25], [2, 2, 3, 3]])
    torch.testing.assert_close(aligned_box_iou(a, b), box_iou(a, b).diagonal())


# ---------------------------------------------------------------- targets
def test_pad_targets_groups_rows_by_image():
    targets = torch.tensor([[2, 1, 0, 0, 5, 5], [0, 2, 1, 1, 4, 4], [2, 0, 3, 3, 9, 9]], dtype=torch.float32)
    padded, valid = pad_targets(targets, batch_size=3)
    assert padded.shape == (3, 2, 5)
    assert valid.tolist() == [[True, False], [False, False], [True, True]]
    assert padded[0, 0].tolist() == [2, 1, 1, 4, 4]
    assert padded[2, :, 0].tolist() == [1, 0]  # order inside an image kept
    with pytest.raises(DataError):
        pad_targets(targets, batch_size=2)


# ---------------------------------------------------------------- assigner
def _grid(size=8, stride=8.0):
    points, _ = make_anchors([(size, size)], [stride])
    return points * stride  # pixels: centres 4, 12, ..., 60


def _perfect_predictions(points, gt_box, num_classes, label, score=0.9):
    """Every anchor predicts ``gt_box`` with a fixed class score (so IoU = 1 inside the box)."""
    pred_boxes = gt_box.expand(1, points.shape[0], 4).clone()
    pred_scores = torch.full((1, points.shape[0], num_classes), 0.05)
    pred_scores[..., label] = score
    return pred_scores, pred_boxes


def test_assigner_positives_are_anchors_inside_the_box():
    points = _grid()
    gt = torch.tensor([[16.0, 16.0, 40.0, 40.0]])  # contains centres 20, 28, 36 -> 3 x 3 = 9 anchors
    scores, boxes = _perfect_predictions(points, gt, 4, label=2)
    assigner = TaskAlignedAssigner(num_classes=4, topk=13)
    labels, tboxes, tscores, fg, gt_idx = assigner(scores, boxes, points, torch.tensor([[2]]), gt[None],
                                                   torch.tensor([[True]]))
    inside = ((points > 16) & (points < 40)).all(1)
    assert fg[0].tolist() == inside.tolist()  # only 9 inside although topk is 13
    assert int(fg.sum()) == 9
    assert torch.all(labels[0, fg[0]] == 2)
    torch.testing.assert_close(tboxes[0, fg[0]], gt.expand(9, 4))
    # soft targets: the box's best anchor gets its IoU (1 here), only in the gt class
    assert tscores[0, fg[0], 2].max() == pytest.approx(1.0, abs=1e-5)
    assert tscores[0, ~fg[0]].abs().sum() == 0
    assert tscores[0, :, [0, 1, 3]].abs().sum() == 0


def test_assigner_topk_keeps_best_aligned_anchors():
    points = _grid()
    gt = torch.tensor([[0.0, 0.0, 64.0, 64.0]])  # all 64 anchors inside
    pred_boxes = gt.expand(1, 64, 4).clone()
    pred_scores = torch.full((1, 64, 2), 0.01)
    best = torch.tensor([5, 17, 42])
    pred_scores[0, best, 1] = 0.9
    assigner = TaskAlignedAssigner(num_classes=2, topk=3)
    _, _, _, fg, _ = assigner(pred_scores, pred_boxes, points, torch.tensor([[1]]), gt[None], torch.tensor([[True]]))
    assert fg[0].nonzero().flatten().tolist() == best.tolist()


def test_assigner_empty_targets():
    points = _grid()
    scores, boxes = torch.rand(2, 64, 3), torch.rand(2, 64, 4) * 10
    assigner = TaskAlignedAssigner(num_classes=3)
    labels, tboxes, tscores, fg, _ = assigner(scores, boxes, points, torch.zeros(2, 0, dtype=torch.long),
                                              torch.zeros(2, 0, 4), torch.zeros(2, 0, dtype=torch.bool))
    assert not fg.any() and tscores.sum() == 0 and tboxes.shape == (2, 64, 4) and labels.shape == (2, 64)
    # padding rows (valid False) are ignored too
    _, _, tscores, fg, _ = assigner(scores, boxes, points, torch.zeros(2, 1, dtype=torch.long),
                                    torch.tensor([[[0.0, 0, 64, 64]]] * 2), torch.zeros(2, 1, dtype=torch.bool))
    assert not fg.any() and tscores.sum() == 0


def test_assigner_two_overlapping_boxes_one_target_per_anchor():
    points = _grid()
    box_a = torch.tensor([0.0, 0.0, 40.0, 40.0])
    box_b = torch.tensor([16.0, 16.0, 56.0, 56.0])  # overlap region holds anchors 20, 28, 36 (3 x 3)
    # every anchor predicts box_b: overlap anchors have IoU 1 with b and < 1 with a
    pred_boxes = box_b.expand(1, 64, 4).clone()
    pred_scores = torch.full((1, 64, 2), 0.5)
    assigner = TaskAlignedAssigner(num_classes=2, topk=64)
    labels, tboxes, _, fg, gt_idx = assigner(pred_scores, pred_boxes, points, torch.tensor([[0, 1]]),
                                             torch.stack((box_a, box_b))[None], torch.tensor([[True, True]]))
    in_a = ((points > 0) & (points < 40)).all(1)
    in_b = ((points > 16) & (points < 56)).all(1)
    assert fg[0].tolist() == (in_a | in_b).tolist()
    both = in_a & in_b
    assert int(both.sum()) == 9
    assert torch.all(gt_idx[0, both] == 1) and torch.all(labels[0, both] == 1)  # higher IoU wins
    assert torch.all(gt_idx[0, in_a & ~in_b] == 0) and torch.all(labels[0, in_a & ~in_b] == 0)
    torch.testing.assert_close(tboxes[0, in_a & ~in_b], box_a.expand(int((in_a & ~in_b).sum()), 4))


# ---------------------------------------------------------------- loss
def test_loss_is_finite_with_gradients_for_an_empty_batch():
    model = tiny_detector()
    loss_fn = DetectionLoss(model)
    raw = model(torch.rand(2, 3, 64, 96))
    total, items = loss_fn(raw, torch.zeros(0, 6))
    assert torch.isfinite(total) and set(items) == {"box", "cls", "dfl"}
    assert items["box"] == 0 and items["dfl"] == 0 and items["cls"] > 0
    total.backward()
    grad = model.head.cls_preds[0].bias.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_loss_terms_and_gradients_with_targets():
    model = tiny_detector(num_classes=3)
    loss_fn = DetectionLoss(model, box=7.5, cls=0.5, dfl=1.5)
    raw = model(torch.rand(2, 3, 64, 64))
    targets = torch.tensor([[0, 1, 4, 4, 40, 50], [1, 2, 10, 20, 60, 60], [1, 0, 0, 0, 30, 30]], dtype=torch.float32)
    total, items = loss_fn(raw, targets)
    assert all(v > 0 for v in items.values())
    expected = 2 * (7.5 * float(items["box"]) + 0.5 * float(items["cls"]) + 1.5 * float(items["dfl"]))  # x batch size
    assert float(total.detach()) == pytest.approx(expected, rel=1e-5)
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.head.box_preds[0].weight.grad.abs().sum() > 0


def test_loss_rejects_class_outside_the_model():
    model = tiny_detector(num_classes=3)
    raw = model(torch.rand(1, 3, 64, 64))
    with pytest.raises(DataError, match="num_classes"):
        DetectionLoss(model)(raw, torch.tensor([[0, 3, 4, 4, 40, 40]], dtype=torch.float32))


def test_ignore_regions_are_not_background():
    model = tiny_detector(num_classes=3)
    # push every score up so background anchors cost a lot
    with torch.no_grad():
        for pred in model.head.cls_preds:
            pred.bias.fill_(2.0)
    raw = model(torch.rand(1, 3, 64, 64))
    targets = torch.tensor([[0, 1, 0, 0, 20, 20]], dtype=torch.float32)
    loss_fn = DetectionLoss(model)
    _, plain = loss_fn(raw, targets)
    _, ignored = loss_fn(raw, targets, ignore=torch.tensor([[0, 24, 24, 64, 64]], dtype=torch.float32))
    _, no_regions = loss_fn(raw, targets, ignore=torch.zeros(0, 5))
    assert ignored["cls"] < 0.8 * plain["cls"]
    assert no_regions["cls"] == pytest.approx(plain["cls"])
    assert ignored["box"] == pytest.approx(plain["box"])


def reference_assign(scores, pred, points, labels, gt, valid, topk, alpha, beta):
    """Plain per-box loops: the definition the vectorised assigner must reproduce."""
    batch, num_anchors, num_classes = scores.shape
    fg = torch.zeros(batch, num_anchors, dtype=torch.bool)
    gt_idx = torch.zeros(batch, num_anchors, dtype=torch.long)
    soft = torch.zeros(batch, num_anchors)
    for b in range(batch):
        claims = {}  # anchor -> list of (iou, m, align)
        for m in range(gt.shape[1]):
            if not valid[b, m]:
                continue
            x1, y1, x2, y2 = gt[b, m].tolist()
            inside = [a for a in range(num_anchors) if x1 < points[a, 0] < x2 and y1 < points[a, 1] < y2]
            metric = {a: float(scores[b, a, labels[b, m]]) ** alpha
                      * float(aligned_box_iou(gt[b, m], pred[b, a])) ** beta for a in inside}
            for a in sorted(inside, key=lambda a: -metric[a])[:topk]:
                claims.setdefault(a, []).append((float(aligned_box_iou(gt[b, m], pred[b, a])), m, metric[a]))
        winners = {a: max(c, key=lambda t: (t[0], -t[1])) for a, c in claims.items()}
        for m in {w[1] for w in winners.values()}:
            mine = {a: w for a, w in winners.items() if w[1] == m}
            max_align = max(w[2] for w in mine.values())
            max_iou = max(w[0] for w in mine.values())
            for a, (_, _, align) in mine.items():
                fg[b, a], gt_idx[b, a], soft[b, a] = True, m, align * max_iou / (max_align + 1e-9)
    return fg, gt_idx, soft


def test_assigner_matches_a_per_box_reference_on_random_scenes():
    gen = torch.Generator().manual_seed(3)
    points, strides = make_anchors([(8, 8), (4, 4), (2, 2)], [8, 16, 32])
    points = points * strides
    batch, num_anchors, num_classes, num_gt = 3, points.shape[0], 4, 7
    scores = torch.rand(batch, num_anchors, num_classes, generator=gen) * 0.9 + 0.05
    half = torch.rand(batch, num_anchors, 2, generator=gen) * 20 + 4
    pred = torch.cat((points - half, points + half), -1)
    corner = torch.rand(batch, num_gt, 2, generator=gen) * 44
    gt = torch.cat((corner, corner + torch.rand(batch, num_gt, 2, generator=gen) * 30 + 6), -1)
    labels = torch.randint(0, num_classes, (batch, num_gt), generator=gen)
    valid = torch.rand(batch, num_gt, generator=gen) > 0.2
    _, _, target_scores, fg, gt_idx = TaskAlignedAssigner(num_classes, topk=5)(scores, pred, points, labels, gt, valid)
    ref_fg, ref_idx, ref_soft = reference_assign(scores, pred, points, labels, gt, valid, 5, 0.5, 6.0)
    assert fg.sum() > 20 and torch.equal(fg, ref_fg)
    assert torch.equal(gt_idx[fg], ref_idx[fg])
    torch.testing.assert_close(target_scores.sum(-1), ref_soft, atol=1e-6, rtol=1e-4)
