"""The one preprocessing path shared by training, export parity checks and the edge runtime."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """Resize to ``input_size`` (a square, or ``input_size`` wide by ``input_height`` tall), scale to [0, 1],
    normalise per channel, lay out as NCHW.

    Greyscale images are repeated over three channels so ImageNet backbones apply unchanged. A non-square
    input keeps long, thin parts (KolektorSDD's commutators, ~500 x 1260 px) near their own aspect, so a
    thin crack is not squeezed away.
    """

    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_height: int | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the model's input."""
        return (self.input_height or self.input_size, self.input_size)

    @property
    def draft_size(self) -> tuple[int, int]:
        """(width, height) a reduced-scale JPEG decode may not go below: the input's own, so that the
        resize never enlarges (the decoder turns it for a frame its EXIF orientation turns; training and
        the edge decode alike)."""
        height, width = self.shape
        return (width, height)

    @property
    def key(self) -> str:
        """The input shape in a file or cache name: ``224px`` (square) or ``224x576px`` (width x height)."""
        return f"{self.input_size}px" if self.input_height is None else f"{self.input_size}x{self.input_height}px"

    def resize(self, image: Image.Image) -> Image.Image:
        height, width = self.shape
        if image.size == (width, height):
            return image
        return image.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=None)

    def to_array(self, image: Image.Image) -> np.ndarray:
        """A resized PIL image to a normalised float32 array of shape (3, H, W)."""
        pixels = np.asarray(image, dtype=np.float32)
        planes = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)  # a grey plane broadcasts over RGB
        scale = (np.asarray(self.std, dtype=np.float32) * 255.0)[:, None, None]
        offset = (np.asarray(self.mean, dtype=np.float32) * 255.0)[:, None, None]
        # Written straight into the channels-first result: no (H, W, 3) temporaries and no transposing copy
        # (3-14x faster, the same float32 arithmetic and values).
        out = np.empty((3, *pixels.shape[:2]), dtype=np.float32)
        np.subtract(planes, offset, out=out)
        return np.divide(out, scale, out=out)

    def __call__(self, image: Image.Image) -> np.ndarray:
        """One decoded image to a (1, 3, H, W) float32 batch."""
        return self.to_array(self.resize(image))[None]
