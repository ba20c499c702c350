"""Near-duplicates in the shared datasets' own labels: what the perceptual hash finds, at what distances.

    python -m benchmarks.near_duplicates

For each dataset: seconds to hash every image (the same decode and hash as ingest), pairs at 0 and at
most 4 bits apart (the split's default), pairs whose labels differ, and for magnetic tile how many pairs
join two capture sessions (the same tile photographed again: the reason its benchmarks hold out whole
sessions). Listed pairs are the closest ones, for a person to check.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from benchmarks.common import CITATIONS, magnetic_tile_items, neu_items, require, write_result
from inspectloop.ingest import SourceItem, scan_folder
from inspectloop.near_duplicates import DEFAULT_MAX_DISTANCE, near_duplicate_pairs, perceptual_hash
from inspectloop.runtime.images import decode_image

LISTED = 25


def kolektorsdd_items() -> list[SourceItem]:
    return scan_folder(require("kolektorsdd"), exclude=["*.txt", "*.csv", "*.md"])


def measure(items: list[SourceItem]) -> dict[str, Any]:
    start = time.perf_counter()
    hashes = {str(item.path): perceptual_hash(decode_image(item.path).image) for item in items}
    seconds = time.perf_counter() - start
    by_path = {str(item.path): item for item in items}
    pairs = near_duplicate_pairs(hashes, DEFAULT_MAX_DISTANCE)
    root = str(items[0].path.parents[2]) + "/"

    def session(path: str) -> str | None:
        return by_path[path].meta.session

    return {
        "images": len(items), "hash_seconds": round(seconds, 2),
        "images_per_second": round(len(items) / seconds, 1),
        "pairs_by_distance": dict(sorted(Counter(p.distance for p in pairs).items())),
        "pairs_at_0": sum(p.distance == 0 for p in pairs), f"pairs_within_{DEFAULT_MAX_DISTANCE}": len(pairs),
        "pairs_with_two_labels": sum(by_path[p.first].label != by_path[p.second].label for p in pairs),
        "pairs_across_sessions": sum(session(p.first) != session(p.second) for p in pairs),
        "closest": [{"first": p.first.removeprefix(root), "second": p.second.removeprefix(root), "bits": p.distance,
                     "labels": [by_path[p.first].label, by_path[p.second].label]} for p in pairs[:LISTED]],
    }


def main() -> None:
    sources = {"neu_det": neu_items, "magnetic_tile": magnetic_tile_items, "kolektorsdd": kolektorsdd_items}
    results = {}
    for name, items in sources.items():
        results[name] = {"citation": CITATIONS[name], **measure(items())}
        r = results[name]
        print(f"{name}: {r['images']} images hashed in {r['hash_seconds']} s; {r['pairs_at_0']} pairs at 0 bits, "
              f"{r[f'pairs_within_{DEFAULT_MAX_DISTANCE}']} within {DEFAULT_MAX_DISTANCE}; "
              f"{r['pairs_with_two_labels']} with two labels; {r['pairs_across_sessions']} across sessions", flush=True)
    write_result("near_duplicates", {"max_distance": DEFAULT_MAX_DISTANCE, "datasets": results})


if __name__ == "__main__":
    main()
