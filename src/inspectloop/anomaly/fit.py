"""Fitting a PatchCore memory bank on good images, in bounded memory, and scoring with it.

Memory stays bounded whatever the number of images: features are extracted ``chunk_images`` at a
time, each chunk is reduced at once to its own greedy coreset (``oversample`` times its share of the
final bank), and the final coreset is selected from those survivors. Nothing ever holds every
training patch, and no (patches x bank) distance matrix is formed at fit time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from inspectloop.anomaly.coreset import greedy_coreset
from inspectloop.errors import TrainingError
from inspectloop.runtime.images import to_working_mode
from inspectloop.runtime.preprocess import Preprocess
from inspectloop.train.config import LITE0_LAST_BLOCK, backbone_blocks_in_order

if TYPE_CHECKING:  # torch is imported when a model is fitted
    import torch

    from inspectloop.anomaly.model import PatchCore, PatchFeatures
    from inspectloop.runtime.metadata import ModelMetadata

MIN_GOOD_IMAGES = 10  # below this a bank describes a handful of parts, not the process
_FORWARD_BATCH = 8  # images per backbone pass: bounds activation memory

Progress = Callable[[int, int], None]
# Settings of models saved before these fields existed: they were fitted without them.
_BEFORE_STANDARDISE = {"standardise": False, "score_share": 0.0}


@dataclass(frozen=True)
class PatchCoreConfig:
    """How to build a PatchCore model.

    ``stages``: backbone blocks whose activations make the patch features (EfficientNet-Lite0: block 4
    ends the stride-8 stage, 40 channels; block 10 the stride-16 one, 112 channels; blocks 14 and 15 the
    stride-32 ones, 192 and 320 channels, upsampled to the patch grid). ``stride``: the
    patch grid (8, 16 or 32 input pixels per patch). ``coreset_ratio``: share of training patches kept in
    the memory bank, at most ``max_bank`` rows (the bank's size sets inference time and file size).
    ``chunk_images``: images whose features are held at once while fitting (the memory bound).
    ``oversample``: how many times its share of the final bank each chunk keeps before the final pick.
    ``standardise``: bring each image to a fixed mean and contrast first (exposure shifts between
    sessions are not anomalies). ``score_share``: the image score is the mean of its largest patch
    scores, this share of its patches (0: the single largest, as in PatchCore). ``input_height``: the
    input's rows when it is not square (``input_size`` is then its width): long parts keep their aspect,
    so thin defects keep their pixels.
    """

    backbone: str = "efficientnet-lite0"
    input_size: int = 256
    input_height: int | None = None
    stages: tuple[int, ...] = (4, 10)
    stride: int = 16
    coreset_ratio: float = 0.04
    max_bank: int = 8192
    chunk_images: int = 8
    oversample: float = 4.0
    standardise: bool = True
    score_share: float = 1.0
    seed: int = 0
    threads: int = 0

    def __post_init__(self) -> None:
        checks = ((self.backbone == "efficientnet-lite0",
                   f"backbone must be efficientnet-lite0 (stages number its blocks), got {self.backbone!r}"),
                  (backbone_blocks_in_order(self.stages),
                   f"stages must be increasing block numbers from 0 to {LITE0_LAST_BLOCK}"),
                  (self.stride in (8, 16, 32), "stride must be 8, 16 or 32"),
                  (0.0 < self.coreset_ratio <= 1.0, "coreset_ratio must be in (0, 1]"),
                  (self.max_bank >= 16, "max_bank must be at least 16"),
                  (self.chunk_images >= 1, "chunk_images must be at least 1"),
                  (self.oversample >= 1.0, "oversample must be at least 1"),
                  (0.0 <= self.score_share <= 1.0, "score_share must be in [0, 1]"),
                  (64 <= self.input_size <= 1024 and self.input_size % 16 == 0,
                   "input_size must be a multiple of 16 from 64 to 1024"),
                  (self.input_height is None or (64 <= self.input_height <= 2048 and self.input_height % 16 == 0),
                   "input_height must be a multiple of 16 from 64 to 2048 (or None: square)"),
                  (self.threads >= 0, "threads must be 0 (all cores) or more"))
        for ok, message in checks:
            if not ok:
                raise TrainingError(f"anomaly model settings: {message}", "fix the setting named")


class PatchCoreModel:
    """A fitted PatchCore model: the torch module (``module``), its preprocessing and its bank's history.

    ``images_seen`` and ``patches_seen`` count the good images and patches the bank was chosen from
    (the coreset's share in :meth:`update` is taken of all of them).
    """

    def __init__(self, module: PatchCore, config: PatchCoreConfig, preprocess: Preprocess, *, images_seen: int,
                 patches_seen: int) -> None:
        self.module = module
        self.config = config
        self.preprocess = preprocess
        self.images_seen = images_seen
        self.patches_seen = patches_seen

    @property
    def bank(self) -> np.ndarray:
        """The memory bank (M, D)."""
        return self.module.bank.numpy()

    def score(self, images: Sequence[Image.Image], *, batch_size: int = 4) -> tuple[np.ndarray, np.ndarray]:
        """Anomaly scores (N,) and heatmaps (N, H, W) of ``images`` (higher: less like the good parts)."""
        _, scores, heatmaps = self.forward(images, batch_size=batch_size)
        return scores, heatmaps

    def forward(self, images: Sequence[Image.Image], *,
                batch_size: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The module's three outputs for ``images``: logits (N, 2), scores (N,), heatmaps (N, H, W)."""
        import torch

        outputs: list[list[np.ndarray]] = [[], [], []]
        self.module.eval()
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                batch = _batch(images[start:start + batch_size], self.preprocess)
                for store, value in zip(outputs, self.module(batch)[:3]):  # the features are the drift monitor's
                    store.append(value.numpy())
        if not outputs[0]:
            return (np.zeros((0, 2), np.float32), np.zeros(0, np.float32),
                    np.zeros((0, *self.preprocess.shape), np.float32))
        logits, scores, heatmaps = (np.concatenate(o) for o in outputs)
        return logits, scores, heatmaps

    def update(self, images: Sequence[Image.Image], *, progress: Progress | None = None) -> PatchCoreModel:
        """A new model whose bank also covers ``images`` (good parts): the coreset is re-run on the old
        bank plus the new images' patches; the backbone, and this model, are unchanged."""
        import torch

        if not images:
            raise TrainingError("no new good images to add to the memory bank", "pass the new good images")
        _threads(self.config)
        new_patches = len(images) * _patches(self.config)
        target = _bank_size(self.config, self.patches_seen + new_patches)
        survivors = _chunk_coresets(self.module.features, images, self.preprocess, self.config,
                                    target, self.patches_seen + new_patches, progress)
        pool = np.concatenate([self.bank, survivors])
        bank = pool[greedy_coreset(pool, target, seed=self.config.seed)]
        module = _build_module(self.config, torch.from_numpy(bank), features=self.module.features)
        module.set_normalisation(float(self.module.centre), float(self.module.scale))
        return PatchCoreModel(module, self.config, self.preprocess, images_seen=self.images_seen + len(images),
                              patches_seen=self.patches_seen + new_patches)

    def image_scores(self, images: Sequence[Image.Image], *, batch_size: int = 4) -> np.ndarray:
        """Anomaly scores (N,) alone (heatmaps are dropped batch by batch: bounded memory on big sets)."""
        return np.concatenate([self.score(images[i:i + 64], batch_size=batch_size)[0]
                               for i in range(0, len(images), 64)] or [np.zeros(0, np.float32)])

    def save(self, path: Path) -> None:
        """Write the bank, normalisation, counts and config (the backbone is the installed package's)."""
        with path.open("wb") as stream:
            np.savez(stream, bank=self.bank, centre=float(self.module.centre), scale=float(self.module.scale),
                     images_seen=self.images_seen, patches_seen=self.patches_seen,
                     config=json.dumps(asdict(self.config)))

    @classmethod
    def load(cls, path: Path) -> PatchCoreModel:
        """A model written by :meth:`save`."""
        import torch

        with np.load(path) as data:
            config = PatchCoreConfig(**{**_BEFORE_STANDARDISE,
                                        **{k: tuple(v) if isinstance(v, list) else v
                                           for k, v in json.loads(str(data["config"])).items()}})
            module = _build_module(config, torch.from_numpy(data["bank"]), features=_build_features(config))
            module.set_normalisation(float(data["centre"]), float(data["scale"]))
            return cls(module, config, _preprocess(config), images_seen=int(data["images_seen"]),
                       patches_seen=int(data["patches_seen"]))

    def with_normalisation(self, centre: float, scale: float) -> PatchCoreModel:
        """This model with P(anomaly) = 0.5 at score ``centre`` (see :class:`PatchCore`); changes the module."""
        self.module.set_normalisation(centre, scale)
        return self


def fit_patchcore(images: Sequence[Image.Image], config: PatchCoreConfig | None = None, *,
                  progress: Progress | None = None) -> PatchCoreModel:
    """Fit a PatchCore model on ``images`` of good parts only (any size; greyscale or colour).

    TrainingError when there are fewer than ``MIN_GOOD_IMAGES``. ``progress(done, total)`` is called
    after each chunk of images.
    """
    import torch

    config = config or PatchCoreConfig()
    if len(images) < MIN_GOOD_IMAGES:
        raise TrainingError(f"an anomaly model needs at least {MIN_GOOD_IMAGES} good images to learn from, "
                            f"got {len(images)}", "add good images to the dataset version's training split")
    _threads(config)
    torch.manual_seed(config.seed)
    features = _build_features(config)
    preprocess = _preprocess(config)
    total = len(images) * _patches(config)
    target = _bank_size(config, total)
    survivors = _chunk_coresets(features, images, preprocess, config, target, total, progress)
    bank = survivors[greedy_coreset(survivors, target, seed=config.seed)]
    module = _build_module(config, torch.from_numpy(np.ascontiguousarray(bank)), features=features)
    return PatchCoreModel(module, config, preprocess, images_seen=len(images), patches_seen=total)


def _chunk_coresets(features: PatchFeatures, images: Sequence[Image.Image], preprocess: Preprocess,
                    config: PatchCoreConfig, target: int, total: int, progress: Progress | None) -> np.ndarray:
    """Each chunk of images' patches reduced to ``oversample`` times its share of a ``target``-row bank."""
    import torch

    kept = []
    features.eval()
    for start in range(0, len(images), config.chunk_images):
        chunk = images[start:start + config.chunk_images]
        with torch.no_grad():
            maps = [features(_batch(chunk[i:i + _FORWARD_BATCH], preprocess))
                    for i in range(0, len(chunk), _FORWARD_BATCH)]
        patches = torch.cat(maps).permute(0, 2, 3, 1).reshape(-1, maps[0].shape[1]).numpy()
        keep = min(len(patches), math.ceil(config.oversample * target * len(patches) / total))
        kept.append(patches[greedy_coreset(patches, keep, seed=config.seed + start)])
        if progress:
            progress(min(start + config.chunk_images, len(images)), len(images))
    return np.concatenate(kept)


def _bank_size(config: PatchCoreConfig, patches: int) -> int:
    return max(1, min(config.max_bank, math.ceil(config.coreset_ratio * patches)))


def _patches(config: PatchCoreConfig) -> int:
    """Patches per image: the patch grid's cells."""
    return (config.input_height or config.input_size) // config.stride * (config.input_size // config.stride)


def _preprocess(config: PatchCoreConfig) -> Preprocess:
    from inspectloop.models.backbones import backbone_spec

    spec = backbone_spec(config.backbone)
    return Preprocess(config.input_size, spec.mean, spec.std, config.input_height)


def _build_features(config: PatchCoreConfig) -> PatchFeatures:
    from inspectloop.anomaly.model import PatchFeatures
    from inspectloop.models.backbones import load_backbone

    trunk = load_backbone(config.backbone, input_size=config.input_size)
    return PatchFeatures(trunk, config.stages, config.stride, standardise=config.standardise).eval()


def _build_module(config: PatchCoreConfig, bank: torch.Tensor, *, features: PatchFeatures) -> PatchCore:
    from inspectloop.anomaly.model import PatchCore

    top = max(1, round(config.score_share * _patches(config)))
    return PatchCore(features, bank, _preprocess(config).shape, top=top).eval()


def _batch(images: Sequence[Image.Image], preprocess: Preprocess) -> torch.Tensor:
    import torch

    arrays = [preprocess.to_array(preprocess.resize(to_working_mode(image, f"image {i}")))
              for i, image in enumerate(images)]
    return torch.from_numpy(np.stack(arrays))


def _threads(config: PatchCoreConfig) -> None:
    import torch

    if config.threads:
        torch.set_num_threads(config.threads)



def metadata_for(model: PatchCoreModel, *, model_name: str, model_version: str, good_class: str = "good",
                 review: dict[str, Any] | None = None, colour_mode: str = "RGB", **lineage: Any) -> ModelMetadata:
    """The model file's metadata for ``model``: task anomaly, classes (``good_class``, anomaly), and the
    model's own preprocessing (input size, mean, std), so that the file scores what ``model.score`` does.

    ``lineage``: ``dataset_version``, ``run_id``, ``code_version``, ``jpeg_draft`` as in ModelMetadata.
    """
    from inspectloop.anomaly.threshold import ANOMALY_CLASS
    from inspectloop.runtime.metadata import ANOMALY, ModelMetadata

    p = model.preprocess
    return ModelMetadata(task=ANOMALY, model_name=model_name, model_version=model_version,
                         class_names=(good_class, ANOMALY_CLASS), good_class=good_class, input_size=p.input_size,
                         input_height=p.input_height, mean=p.mean, std=p.std, review=review, colour_mode=colour_mode,
                         **lineage)
