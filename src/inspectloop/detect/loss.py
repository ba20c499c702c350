"""Detection loss: binary cross-entropy on soft (task-aligned) class targets plus GIoU on the positives."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from inspectloop.detect.assign import assign
from inspectloop.detect.model import decode

BOX_WEIGHT = 2.0  # GIoU against BCE: the classic balance of the one-stage family (box 2 : class 1)


def giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - generalised IoU of paired boxes (M, 4) -> (M,); well-defined when boxes do not overlap."""
    lt = torch.maximum(pred[:, :2], target[:, :2])
    rb = torch.minimum(pred[:, 2:], target[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_p = (pred[:, 2:] - pred[:, :2]).clamp(min=0).prod(-1)
    area_t = (target[:, 2:] - target[:, :2]).clamp(min=0).prod(-1)
    union = area_p + area_t - inter + 1e-9
    hull = (torch.maximum(pred[:, 2:], target[:, 2:]) - torch.minimum(pred[:, :2], target[:, :2])).clamp(min=0).prod(-1)
    return 1 - (inter / union - (hull - union) / (hull + 1e-9))


def detection_loss(logits: torch.Tensor, distances: torch.Tensor, points: torch.Tensor, strides: torch.Tensor,
                   gt_boxes: Sequence[torch.Tensor], gt_labels: Sequence[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """The batch's loss from the model's ``raw`` outputs and each image's true boxes (G, 4) and labels (G,)."""
    boxes = decode(points, distances)
    with torch.no_grad():
        assignments = [assign(torch.sigmoid(logits[i]), boxes[i], points, strides, gt_boxes[i], gt_labels[i])
                       for i in range(logits.shape[0])]
    target_scores = torch.stack([a.target_scores for a in assignments])
    target_boxes = torch.stack([a.target_boxes for a in assignments])
    positive = torch.stack([a.positive for a in assignments])
    norm = target_scores.sum().clamp(min=1.0)
    cls = nn.functional.binary_cross_entropy_with_logits(logits, target_scores, reduction="sum") / norm
    if positive.any():
        weight = target_scores.sum(-1)[positive]
        box = (giou_loss(boxes[positive], target_boxes[positive]) * weight).sum() / norm
    else:
        box = logits.sum() * 0.0
    total = cls + BOX_WEIGHT * box
    return total, {"cls": float(cls.detach()), "box": float(box.detach())}
