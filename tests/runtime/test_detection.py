"""The edge's detection post-processing without a model: batching, tile coverage, the per-class box rule, bad frames."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from inspectloop.runtime.decision import Decision
from inspectloop.runtime.detection import (
    BoxRule, Tile, check_settings, detect_frame, frame_decision, plain_tiles, tile_starts, tiles_of,
)

SIZE = 64
TILING = {"tile_overlap": 16}


def fake_run(calls: list[int]) -> object:
    """A stand-in graph: per tile, one box of class 0 around its brightest pixel, scored by its brightness."""
    def run(tiles: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        calls.append(len(tiles))
        boxes, scores = np.zeros((len(tiles), 2, 4), np.float32), np.zeros((len(tiles), 2, 2), np.float32)
        for n, tile in enumerate(tiles):
            pixels = np.asarray(tile, dtype=np.float32)
            y, x = np.unravel_index(pixels.argmax(), pixels.shape)
            boxes[n, 0] = [x - 3, y - 3, x + 4, y + 4]
            scores[n, 0, 0] = pixels.max() / 255
        return boxes, scores
    return run


def spotted_frame(width: int, height: int, spots: list[tuple[int, int, int]]) -> Image.Image:
    pixels = np.full((height, width), 100, dtype=np.uint8)
    for x, y, value in spots:
        pixels[y - 2:y + 3, x - 2:x + 3] = value
    return Image.fromarray(pixels)


@pytest.mark.parametrize("batch", [2, 5, 8, 100])
def test_batched_tiles_give_the_boxes_of_one_tile_at_a_time(batch: int) -> None:
    frame = spotted_frame(300, 200, [(30, 30, 250), (150, 120, 200), (290, 190, 180)])
    one_calls: list[int] = []
    calls: list[int] = []
    expected = detect_frame(frame, SIZE, fake_run(one_calls), TILING, batch=1)
    got = detect_frame(frame, SIZE, fake_run(calls), TILING, batch=batch)
    assert set(one_calls) == {1} and max(calls) <= batch and sum(calls) == sum(one_calls) == len(
        tiles_of(frame, SIZE, 16))
    for want, have in zip(expected, got):
        np.testing.assert_allclose(have, want, atol=1e-5)


@pytest.mark.parametrize(("width", "height", "size", "overlap"), [(4096, 3000, 256, 64), (4096, 3072, 512, 64),
                                                                   (300, 65, 64, 16), (65, 300, 64, 0)])
def test_a_frame_is_tiled_to_its_edges_with_the_overlap(width: int, height: int, size: int, overlap: int) -> None:
    covered = np.zeros((height, width), dtype=np.int8)
    xs, ys = tile_starts(width, size, overlap), tile_starts(height, size, overlap)
    for y in ys:
        for x in xs:
            covered[y:y + size, x:x + size] += 1
    assert covered.min() >= 1  # every pixel, the last row and column included
    assert xs[-1] + size == width and ys[-1] + size == height  # edge tiles end on the edge: no padding needed
    for starts in (xs, ys):
        assert all(b - a <= size - overlap for a, b in zip(starts, starts[1:]))


def test_a_12_mp_frame_becomes_native_scale_tiles() -> None:
    frame = Image.new("L", (4096, 3000), 120)
    tiles = tiles_of(frame, 256, 64)
    assert len(tiles) == len(tile_starts(4096, 256, 64)) * len(tile_starts(3000, 256, 64)) == 21 * 16
    assert all(crop.size == (256, 256) and tile.scale_x == tile.scale_y == 1.0 for tile, crop in tiles)
    assert max(t.x for t, _ in tiles) == 4096 - 256 and max(t.y for t, _ in tiles) == 3000 - 256


def test_a_frame_smaller_than_a_tile_is_resized_whole_and_its_boxes_come_back_in_its_pixels() -> None:
    frame = spotted_frame(40, 32, [(20, 16, 255)])
    boxes, scores, classes = detect_frame(frame, SIZE, fake_run([]), TILING)
    assert len(boxes) == 1 and (boxes[0, 2] <= 40) and (boxes[0, 3] <= 32) and boxes[0, 0] < 20 < boxes[0, 2]


@pytest.mark.parametrize(("image", "message"), [
    (Image.new("I;16", (100, 100)), "8-bit grey \\(L\\) or RGB, got mode 'I;16'"),
    (Image.new("RGBA", (100, 100)), "got mode 'RGBA'"),
    (Image.new("F", (100, 100)), "got mode 'F'"),
    (np.zeros((100, 100), np.uint8), "a frame must be a PIL image, got ndarray"),
])
def test_a_frame_the_runtime_cannot_tile_is_refused_with_the_fix(image: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        detect_frame(image, SIZE, fake_run([]), TILING)  # type: ignore[arg-type]


def test_batch_must_be_positive_and_tiles_must_move_on() -> None:
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        detect_frame(Image.new("L", (100, 100)), SIZE, fake_run([]), TILING, batch=0)
    with pytest.raises(ValueError, match="tile overlap 64 must be smaller than the 64-pixel tiles"):
        detect_frame(Image.new("L", (100, 100)), SIZE, fake_run([]))


RULE = BoxRule.of(("scratch", "pit"), {"scratch": 0.8, "pit": 0.5}, {"scratch": 0.3})


@pytest.mark.parametrize(("scores", "classes", "verdict", "box_class"), [
    ([], [], "pass", None),
    ([0.29], [0], "pass", None),        # below scratch's review floor
    ([0.3], [0], "review", 0),          # at the floor
    ([0.79], [0], "review", 0),
    ([0.8], [0], "reject", 0),          # at the threshold
    ([0.49], [1], "pass", None),        # pit has no band: below its threshold is a pass
    ([0.5], [1], "reject", 1),
    ([0.6, 0.7], [1, 0], "reject", 1),  # a pit reject outranks a stronger scratch in review
    ([0.4, 0.7], [0, 0], "review", 0),
])
def test_the_box_rule_is_per_class(scores: list[float], classes: list[int], verdict: str,
                                   box_class: int | None) -> None:
    assert RULE.verdict(np.array(scores), np.array(classes, dtype=np.int64)) == (verdict, box_class)


def test_only_boxes_from_their_class_floor_are_shown() -> None:
    shown = RULE.shown(np.array([0.2, 0.35, 0.45, 0.55]), np.array([0, 0, 1, 1]))
    assert shown.tolist() == [False, True, False, True]


@pytest.mark.parametrize(("scores", "policy", "banded", "expected"), [
    ([0.9], (1, Decision.REJECT), False, (1, Decision.REJECT)),
    ([0.6], (1, Decision.REJECT), False, (1, Decision.REVIEW)),  # under its threshold: not a reject on P(good) < 0.5
    ([0.1], (0, Decision.PASS), False, (0, Decision.PASS)),
    ([0.6], (0, Decision.PASS), True, (1, Decision.REVIEW)),     # the band turns a pass into a review
    ([0.9], (1, Decision.REVIEW), True, (1, Decision.REVIEW)),   # an image-level band keeps its own decision
    ([0.1], (0, Decision.PASS), True, (0, Decision.PASS)),
])
def test_a_frame_is_decided_by_its_worst_box(scores: list[float], policy: tuple[int, Decision], banded: bool,
                                             expected: tuple[int, Decision]) -> None:
    assert frame_decision(RULE, np.array(scores), np.zeros(len(scores), np.int64), *policy, banded=banded) == expected


@pytest.mark.parametrize(("settings", "message"), [
    ({"review_from": {"dent": 0.2}}, "names classes with no boxes: dent"),
    ({"review_from": {"scratch": 0.9}}, "at or below each class's threshold; it does not for scratch"),
    ({"review_from": {"scratch": 1.5}}, "must map box classes to numbers from 0 to 1"),
    ({"review_from": [0.2]}, "must map box classes"),
    ({"skip_plain": -1}, "skip_plain must be 0"),
    ({"skip_plain": True}, "skip_plain must be 0"),
    ({"tile_scale": 0}, "tile_scale must be a number from 0.125 to 8"),
    ({"tile_scale": "2"}, "tile_scale must be a number"),
])
def test_bad_detection_settings_are_named(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_settings(settings, ("scratch", "pit"), {"scratch": 0.8, "pit": 0.5})


def test_the_plain_tile_check_keeps_the_tiles_with_a_spot() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.normal(120, 4, (256, 384)).clip(0, 255).astype(np.uint8)
    pixels[200:206, 300:320] = 40  # a dark scratch in the bottom-right
    frame = Image.fromarray(pixels)
    tiles = [tile for tile, _ in tiles_of(frame, SIZE, 0)]
    plain = plain_tiles(frame, tiles, SIZE, 6.0)
    spotted = [not p for p in plain]
    assert sum(spotted) >= 1 and all(t.x <= 319 and t.x + SIZE >= 300 and t.y <= 205 and t.y + SIZE >= 200
                                     for t, s in zip(tiles, spotted) if s)
    assert not plain_tiles(frame, [Tile(300 - 32, 200 - 32)], SIZE, 6.0)[0]


def test_skipping_plain_tiles_is_off_unless_set() -> None:
    frame = spotted_frame(300, 200, [(30, 30, 250)])
    all_calls: list[int] = []
    some_calls: list[int] = []
    detect_frame(frame, SIZE, fake_run(all_calls), TILING)
    boxes, _, _ = detect_frame(frame, SIZE, fake_run(some_calls), {**TILING, "skip_plain": 6.0})
    assert sum(some_calls) < sum(all_calls) == len(tiles_of(frame, SIZE, 16))
    assert len(boxes) >= 1 and boxes[0, 0] < 30 < boxes[0, 2]


def test_a_zoomed_frame_gives_its_boxes_in_the_frames_own_pixels() -> None:
    frame = spotted_frame(300, 200, [(60, 40, 250), (230, 150, 200)])
    native_calls: list[int] = []
    zoomed_calls: list[int] = []
    native, _, _ = detect_frame(frame, SIZE, fake_run(native_calls), TILING)
    zoomed, scores, _ = detect_frame(frame, SIZE, fake_run(zoomed_calls), {**TILING, "tile_scale": 2.0})
    assert sum(zoomed_calls) > sum(native_calls)  # the frame was enlarged before it was tiled
    centres = (zoomed[:, :2] + zoomed[:, 2:]) / 2
    for x, y in ((60, 40), (230, 150)):  # each spot comes back where it is in the frame, not in the enlarged copy
        assert np.abs(centres - [x, y]).max(1).min() <= 2
    assert zoomed[:, 2:].max() <= 300 and (zoomed[:, 2:] - zoomed[:, :2]).max() <= 5  # 7 input px = 3.5 frame px


def test_a_frame_that_fits_the_input_is_not_zoomed() -> None:
    frame = spotted_frame(SIZE - 4, SIZE - 10, [(20, 20, 250)])
    plain = detect_frame(frame, SIZE, fake_run([]), TILING)
    zoomed = detect_frame(frame, SIZE, fake_run([]), {**TILING, "tile_scale": 3.0})
    for want, have in zip(plain, zoomed):
        np.testing.assert_allclose(have, want)
