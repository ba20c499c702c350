"""The cleanlab side of ``python -m benchmarks.label_quality``; runs in .venv-cleanlab, never in the product's venv.

    .venv-cleanlab/bin/python benchmarks/peers/cleanlab_run.py IN.npz OUT.npz

IN.npz holds, for each setting i, ``labels_i`` (N,) and ``probs_i`` (N, K): the same out-of-fold probabilities
inspectloop's own estimate reads. OUT.npz gets ``issues_i`` (N,) bool from cleanlab's ``find_label_issues``
with its defaults (prune by noise rate), and ``issues_both_i`` with ``filter_by="both"`` (noise rate and class,
the filter inspectloop uses). Metrics are computed by the parent. cleanlab is AGPL-3.0: a peer only.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from cleanlab.filter import find_label_issues


def main() -> None:
    source, target = sys.argv[1], sys.argv[2]
    data = np.load(source)
    out: dict[str, np.ndarray] = {}
    for name in [n for n in data.files if n.startswith("labels_")]:
        index = name.removeprefix("labels_")
        started = time.perf_counter()
        out[f"issues_{index}"] = find_label_issues(labels=data[name], pred_probs=data[f"probs_{index}"])
        out[f"seconds_{index}"] = np.array(time.perf_counter() - started)
        out[f"issues_both_{index}"] = find_label_issues(labels=data[name], pred_probs=data[f"probs_{index}"],
                                                        filter_by="both")
    np.savez(target, **out)


if __name__ == "__main__":
    main()
