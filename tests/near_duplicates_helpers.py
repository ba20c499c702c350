"""Pictures with structure a perceptual hash sees, and folders holding re-encoded copies of some."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from inspectloop.domain import CaptureMeta
from inspectloop.ingest import SourceItem
from tests.conftest import save


def textured(seed: int, size: int = 128) -> Image.Image:
    """A surface with structure at low frequencies (what a DCT hash sees), plus noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(128, 40, (8, 8))
    pixels = np.kron(coarse, np.ones((size // 8, size // 8))) + rng.normal(0, 6, (size, size))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L")


def copies(root: Path, seeds: range, *, twins: dict[int, str], label_of: dict[int, str] | None = None) -> list[SourceItem]:
    """One PNG per seed, labelled ``good``; each seed in ``twins`` also gets a JPEG copy with that label."""
    items = []
    for seed in seeds:
        image = textured(seed)
        items.append(SourceItem(path=save(image, root / f"{seed}.png"), label=(label_of or {}).get(seed, "good"),
                                meta=CaptureMeta()))
        if seed in twins:
            path = save(image, root / f"{seed}-copy.jpg", quality=80)
            items.append(SourceItem(path=path, label=twins[seed], meta=CaptureMeta()))
    return items
