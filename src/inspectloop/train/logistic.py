"""The linear probe's head: a regularised, class-balanced logistic regression fitted by full-batch L-BFGS.

Training glue: it fits a weight matrix and bias on standardised features; :func:`inspectloop.train.loop.probe`
folds them into the classifier's linear layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


class LogisticProbe:
    """A multinomial logistic regression fitted by full-batch L-BFGS: class-balanced cross-entropy (or the
    graded loss) plus ``l2 / 2 * |W|^2``, the objective of scikit-learn's ``LogisticRegression(C,
    class_weight="balanced")`` divided by the number of images (``l2 = 1 / (C n)``), in float64."""

    ROUND = 10  # solver iterations between two history entries
    MAX_ROUNDS = 50

    def __init__(self, classes: int, l2: float) -> None:
        self.classes, self.l2 = classes, l2
        self.weight = torch.zeros(0, dtype=torch.float64)
        self.bias = torch.zeros(classes, dtype=torch.float64)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return z @ self.weight.T + self.bias

    def fit(self, z: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None, graded: Any,
            val_score: Callable[[], float], on_epoch: Callable[[dict[str, Any]], None] | None) -> list[dict[str, Any]]:
        """Fit on standardised features ``z``; one history entry (loss, validation macro recall) per round."""
        weight = torch.zeros(self.classes, z.shape[1], dtype=torch.float64, requires_grad=True)
        bias = torch.zeros(self.classes, dtype=torch.float64, requires_grad=True)
        counts = torch.bincount(labels, minlength=self.classes).clamp(min=1).double()
        sample_weight = ((counts.sum() / counts) / self.classes)[labels]
        solver = torch.optim.LBFGS([weight, bias], lr=1, max_iter=self.ROUND, history_size=20,
                                   tolerance_grad=1e-7, tolerance_change=1e-10, line_search_fn="strong_wolfe")

        def objective() -> torch.Tensor:
            solver.zero_grad()
            logits = z @ weight.T + bias
            if targets is not None:
                data = graded.loss(logits, targets, sample_weight=sample_weight)
            else:
                data = (nn.functional.cross_entropy(logits, labels, reduction="none") * sample_weight).sum() \
                    / sample_weight.sum()
            loss = data + 0.5 * self.l2 * (weight ** 2).sum()
            loss.backward()
            return loss

        history: list[dict[str, Any]] = []
        previous = float("inf")
        for round_ in range(self.MAX_ROUNDS):
            loss = float(solver.step(objective).detach())  # the loss where this round began
            self.weight, self.bias = weight.detach().clone(), bias.detach().clone()
            history.append({"epoch": round_, "loss": round(loss, 6), "val_macro_recall": round(val_score(), 4)})
            if on_epoch:
                on_epoch(history[-1])
            if previous - loss < 1e-9 * max(1.0, abs(loss)):  # converged: L-BFGS no longer moves
                break
            previous = loss
        return history
