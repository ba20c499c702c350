"""Near-duplicates in the shared datasets' own labels: what the perceptual hash finds, at what distances,
and what embedding similarity finds beyond it.

    python -m benchmarks.near_duplicates

For each dataset: seconds to hash every image (the same decode and hash as ingest), pairs at 0 and at
most 4 bits apart (the split's default), pairs whose labels differ, and for magnetic tile how many pairs
join two capture sessions (the same tile photographed again: the reason its benchmarks hold out whole
sessions). Listed pairs are the closest ones, for a person to check.

Then the embedding pass (the frozen backbone at the duplicate search's input size, as ``dataset duplicates``
runs it): seconds and images/s (with the load average: the machine is shared), the pairs at the default
cosine similarity and at a few others, how many of the hash's pairs it also finds, and the pairs it finds
beyond the hash, most alike first, for a person to check.
"""

from __future__ import annotations

import time
from pathlib import Path
from collections import Counter
from typing import Any

from benchmarks.common import CITATIONS, magnetic_tile_items, neu_items, require, write_result
from inspectloop.ingest import SourceItem, scan_folder
from inspectloop.embeddings import DEFAULT_BACKBONE, DUPLICATE_INPUT_SIZE
from inspectloop.labelquality.probabilities import frozen_features
from inspectloop.near_duplicates import (
    DEFAULT_MAX_DISTANCE, DEFAULT_MIN_SIMILARITY, EMBEDDING, NearDuplicate, combine_pairs, near_duplicate_pairs,
    perceptual_hash, similar_pairs,
)
from inspectloop.runtime.images import decode_image

LISTED = 25
THRESHOLDS = (0.95, 0.97, 0.98, 0.99)


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

    return {"hash": hash_figures(items, pairs, seconds, session, root),
            "embedding": embedding_figures(items, pairs, hashes, session, root)}


def embedding_figures(items: list[SourceItem], hash_pairs: list[NearDuplicate], hashes: dict[str, int],
                      session: Any, root: str) -> dict[str, Any]:
    paths = [str(item.path) for item in items]
    labels = {str(item.path): item.label for item in items}
    start, load = time.perf_counter(), _loadavg()
    features = frozen_features(paths, lambda p: Path(p).read_bytes(), backbone=DEFAULT_BACKBONE,
                               input_size=DUPLICATE_INPUT_SIZE)
    seconds = time.perf_counter() - start
    embeddings = dict(zip(paths, features.astype("float16").astype("float32"), strict=True))  # as kept
    every = similar_pairs(embeddings, min(THRESHOLDS))
    hashed = {(p.first, p.second) for p in hash_pairs}

    def at(threshold: float) -> list[NearDuplicate]:
        return [p for p in every if (p.similarity or 0.0) >= threshold]

    found = combine_pairs(hash_pairs, at(DEFAULT_MIN_SIMILARITY))
    extra = [p for p in found if p.methods == (EMBEDDING,)]
    return {
        "backbone": DEFAULT_BACKBONE, "input_size": DUPLICATE_INPUT_SIZE, "embed_seconds": round(seconds, 1),
        "images_per_second": round(len(paths) / seconds, 1), "loadavg_at_start": load, "loadavg_at_end": _loadavg(),
        "min_similarity": DEFAULT_MIN_SIMILARITY, "pairs": len(at(DEFAULT_MIN_SIMILARITY)),
        "hash_pairs_also_found": sum(len(p.methods) == 2 for p in found), "hash_pairs": len(hash_pairs),
        "extra_beyond_hash": len(extra),
        "extra_with_two_labels": sum(labels[p.first] != labels[p.second] for p in extra),
        "extra_across_sessions": sum(session(p.first) != session(p.second) for p in extra),
        "by_threshold": {str(t): {"pairs": len(at(t)),
                                  "extra_beyond_hash": sum((p.first, p.second) not in hashed for p in at(t))}
                         for t in THRESHOLDS},
        "extra_listed": [{"first": p.first.removeprefix(root), "second": p.second.removeprefix(root),
                          "similarity": p.similarity, "bits": (hashes[p.first] ^ hashes[p.second]).bit_count(),
                          "labels": [labels[p.first], labels[p.second]]} for p in extra[:LISTED]],
    }


def _loadavg() -> float:
    with open("/proc/loadavg") as handle:
        return float(handle.read().split()[0])


def hash_figures(items: list[SourceItem], pairs: list[NearDuplicate], seconds: float, session: Any,
                 root: str) -> dict[str, Any]:
    by_path = {str(item.path): item for item in items}
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
        measured = measure(items())
        results[name] = {"citation": CITATIONS[name], **measured["hash"], "embedding": measured["embedding"]}
        r, e = results[name], measured["embedding"]
        print(f"{name}: {r['images']} images hashed in {r['hash_seconds']} s; {r['pairs_at_0']} pairs at 0 bits, "
              f"{r[f'pairs_within_{DEFAULT_MAX_DISTANCE}']} within {DEFAULT_MAX_DISTANCE}; "
              f"{r['pairs_with_two_labels']} with two labels; {r['pairs_across_sessions']} across sessions", flush=True)
        print(f"  embedded in {e['embed_seconds']} s ({e['images_per_second']} images/s, load {e['loadavg_at_start']}); "
              f"{e['pairs']} pairs at similarity >= {e['min_similarity']}, {e['hash_pairs_also_found']} of the hash's "
              f"{e['hash_pairs']} among them, {e['extra_beyond_hash']} beyond the hash "
              f"({e['extra_with_two_labels']} with two labels, {e['extra_across_sessions']} across sessions)", flush=True)
    write_result("near_duplicates", {"max_distance": DEFAULT_MAX_DISTANCE, "min_similarity": DEFAULT_MIN_SIMILARITY,
                                     "datasets": results})


if __name__ == "__main__":
    main()
