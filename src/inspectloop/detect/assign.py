"""Task-aligned assignment (TOOD / YOLOv8 family): which locations learn which true box, and how strongly.

Per true box, the candidate locations are those inside it or within ``radius`` strides of its centre
(so a scratch thinner than a stride still gets locations); each is scored by how well the current
prediction already fits, ``score^alpha * IoU^beta``, and the ``top_k`` best learn the box. A location
claimed by several boxes learns the one it overlaps most. Soft class targets are the alignment
normalised per box to the box's best IoU, so confident, well-placed predictions are what is rewarded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ALPHA, BETA, TOP_K, RADIUS = 1.0, 6.0, 10, 2.5


@dataclass(frozen=True)
class Assignment:
    """Per location: ``target_boxes`` (A, 4), ``target_scores`` (A, K) soft one-hot, ``positive`` (A,) mask."""

    target_boxes: torch.Tensor
    target_scores: torch.Tensor
    positive: torch.Tensor


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of boxes a (M, 4) and b (N, 4) as x0, y0, x1, y1 -> (M, N)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)


def assign(scores: torch.Tensor, boxes: torch.Tensor, points: torch.Tensor, strides: torch.Tensor,
           gt_boxes: torch.Tensor, gt_labels: torch.Tensor, *, top_k: int = TOP_K) -> Assignment:
    """Assign one image's locations: predicted ``scores`` (A, K) and ``boxes`` (A, 4) (detached), location
    ``points`` (A, 2) and ``strides`` (A,), true ``gt_boxes`` (G, 4) and ``gt_labels`` (G,)."""
    count, classes = scores.shape
    target_scores = scores.new_zeros((count, classes))
    if gt_boxes.shape[0] == 0:
        return Assignment(boxes.new_zeros((count, 4)), target_scores, torch.zeros(count, dtype=torch.bool))
    x, y = points[:, 0][None], points[:, 1][None]
    inside = (x > gt_boxes[:, 0:1]) & (x < gt_boxes[:, 2:3]) & (y > gt_boxes[:, 1:2]) & (y < gt_boxes[:, 3:4])
    centre = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
    near = ((points[None] - centre[:, None]).abs() < RADIUS * strides[None, :, None]).all(-1)
    candidate = inside | near  # (G, A)
    iou = box_iou(gt_boxes, boxes)  # (G, A)
    align = scores[:, gt_labels].T.pow(ALPHA) * iou.pow(BETA) * candidate
    # a little centre prior breaks ties early in training, when every prediction is equally poor
    align = align + candidate * 1e-9 / (1 + (points[None] - centre[:, None]).pow(2).sum(-1))
    chosen = torch.zeros_like(candidate)
    top = align.topk(min(top_k, count), dim=1).indices
    chosen.scatter_(1, top, True)
    chosen &= candidate
    claimed = chosen.sum(0)
    if (claimed > 1).any():  # a location claimed by several boxes learns the one it overlaps most
        best = (iou * chosen).argmax(0)
        several = claimed > 1
        chosen[:, several] = False
        chosen[best[several], several.nonzero().squeeze(1)] = True
    positive = chosen.any(0)
    owner = chosen.float().argmax(0)
    align = align * chosen
    norm = align.amax(1, keepdim=True).clamp(min=1e-9)
    best_iou = (iou * chosen).amax(1, keepdim=True)
    strength = (align / norm * best_iou).amax(0)  # (A,)
    target_scores[positive, gt_labels[owner[positive]]] = strength[positive]
    return Assignment(gt_boxes[owner], target_scores, positive)
