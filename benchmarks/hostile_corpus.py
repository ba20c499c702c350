"""Hostile image files and the corpus of ``benchmarks.hostile``: what a careless camera PC or a careful
attacker sends. numpy, Pillow and the standard library only, so the runtime tests can use them too.

Each :class:`Case` says what every path (ingest, ``predict``, the runtime, ``/v1/inspect``) should do
with it: refuse it with a clear message, accept it with a warning, or accept it.
"""

from __future__ import annotations

import csv
import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

REFUSE = "refuse"  # a clear error, nothing stored
WARN = "warn"  # accepted, with a warning naming what was lost
ACCEPT = "accept"  # accepted as is


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_of_zeros(width: int, height: int) -> bytes:
    """A valid 8-bit greyscale PNG of ``width`` x ``height`` black pixels, compressed without ever holding them:
    30000 x 30000 (900 MP, a decompression bomb) is under 1 MB; 9000 x 9000 is about 80 KB."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    row = b"\0" * (width + 1)  # filter byte + pixels
    rows_per_block = max(1, (4 << 20) // len(row))
    compressor = zlib.compressobj(9)
    parts, left = [], height
    while left > 0:
        count = min(rows_per_block, left)
        parts.append(compressor.compress(row * count))
        left -= count
    parts.append(compressor.flush())
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def surface(size: tuple[int, int] = (96, 64), seed: int = 0, level: int = 128) -> np.ndarray:
    """A noisy grey surface around ``level`` (uint8, height x width)."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(level, 20, (size[1], size[0])), 0, 255).astype(np.uint8)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def plain_png(seed: int = 0) -> bytes:
    """An ordinary 96 x 64 greyscale PNG: what every path must accept silently."""
    return encode(Image.fromarray(surface(seed=seed), "L"), "PNG")


def animated_gif(frames: int = 5) -> bytes:
    images = [Image.fromarray(surface(seed=i), "L").convert("P") for i in range(frames)]
    return encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=100, loop=0)


def twelve_bit_tiff() -> bytes:
    """16-bit TIFF from a 12-bit camera: values 0..4095 (``v * 255 / 65535`` would be nearly black)."""
    values = (surface().astype(np.uint16) * 16)  # 0..4080
    return encode(Image.fromarray(values), "TIFF")


def half_transparent_png() -> bytes:
    grey = surface(level=160)
    alpha = np.full_like(grey, 128)
    return encode(Image.fromarray(np.stack([grey, grey, grey, alpha], -1), "RGBA"), "PNG")


def cmyk_jpeg() -> bytes:
    return encode(Image.fromarray(np.stack([surface()] * 3, -1), "RGB").convert("CMYK"), "JPEG")


def exif_rotated_jpeg(orientation: int = 6) -> bytes:
    """A 96 x 64 JPEG whose EXIF says: turn me 90 degrees (upright it is 64 x 96)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(Image.fromarray(surface(), "L"), "JPEG", exif=exif.tobytes())


def truncated_jpeg() -> bytes:
    return encode(Image.fromarray(surface((256, 256)), "L"), "JPEG")[:600]


def corrupt_png() -> bytes:
    data = bytearray(encode(Image.fromarray(surface((128, 128)), "L"), "PNG"))
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)  # IDAT body damaged: its CRC no longer matches
    return bytes(data)


@dataclass(frozen=True)
class Case:
    """One hostile file: its name, its bytes, what every path should do with it, and who fixes it."""

    name: str
    data: bytes
    expected: str  # REFUSE, WARN or ACCEPT
    service_expected: str | None = None  # when the service differs (its pixel limit is lower)
    owner: str = "images"


def image_cases() -> list[Case]:
    """The per-file hostile inputs (the whole corpus builds in a second or two)."""
    return [
        Case("truncated.jpg", truncated_jpeg(), REFUSE),
        Case("corrupt.png", corrupt_png(), REFUSE),
        Case("zero_bytes.png", b"", REFUSE),
        Case("bomb_30000.png", png_of_zeros(30000, 30000), REFUSE),
        Case("large_9000.png", png_of_zeros(9000, 9000), ACCEPT, service_expected=REFUSE),
        Case("animated.gif", animated_gif(), WARN),
        Case("twelve_bit.tiff", twelve_bit_tiff(), WARN),
        Case("rgba_half_alpha.png", half_transparent_png(), WARN),
        Case("cmyk.jpg", cmyk_jpeg(), WARN),
        Case("exif_rotated.jpg", exif_rotated_jpeg(), ACCEPT),
        Case("text_named.jpg", b"operator notes: line 3 stopped at 14:02\n" * 20, REFUSE),
        Case("plain.png", plain_png(1), ACCEPT),
    ]


def write_tree(root: Path, cases: list[Case]) -> dict[str, Path]:
    """The cases as a folder-per-class tree under ``root/good`` (plus a symlink loop, which must be
    reported, and the same bytes under two labels); returns each case's path."""
    good = root / "good"
    good.mkdir(parents=True)
    (root / "scratch").mkdir()
    paths = {}
    for case in cases:
        paths[case.name] = good / case.name
        paths[case.name].write_bytes(case.data)
    same = plain_png(99)
    (good / "same_bytes.png").write_bytes(same)
    (root / "scratch" / "same_bytes.png").write_bytes(same)
    loop = good / "loop"
    loop.mkdir()
    os.symlink("..", loop / "back")  # good/loop/back -> good: a cycle for a walker that follows links
    return paths


def write_manifest(root: Path, outside: Path) -> Path:
    """A manifest whose rows name files outside its folder (``../``, absolute) and a 100 KB metadata value."""
    images = root / "images"
    images.mkdir(parents=True)
    (images / "ok.png").write_bytes(plain_png(5))
    (images / "meta.png").write_bytes(plain_png(6))
    outside.write_bytes(plain_png(7))
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "operator"])
        writer.writerow(["images/ok.png", "good", "jo"])
        writer.writerow([os.path.relpath(outside, root), "good", "jo"])  # ../outside_secret.png
        writer.writerow([str(outside), "good", "jo"])  # absolute
        writer.writerow(["images/meta.png", "good", "x" * 100_000])
    return manifest
