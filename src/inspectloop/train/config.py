"""Training configuration: one validated object, surfaced by the CLI, recorded with every run.

The review band's and operating points' settings (``alpha``, ``guarantee``, ``confidence``,
``recall_targets``) are fields like any other, but a run judged by locked acceptance criteria takes
them from the criteria (:func:`decision_settings`): the criteria are the contract, and a run may be
stricter than its contract, never looser.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from inspectloop.decisions.conformal import DEFAULT_CONFIDENCE

LITE0_LAST_BLOCK = 15  # EfficientNet-Lite0 has 16 blocks, 0-15


def backbone_blocks_in_order(blocks: tuple[int, ...]) -> bool:
    """Whether ``blocks`` are increasing EfficientNet-Lite0 block numbers (what patch features are built from)."""
    return bool(blocks) and list(blocks) == sorted(set(blocks)) and 0 <= blocks[0] and blocks[-1] <= LITE0_LAST_BLOCK


if TYPE_CHECKING:
    from inspectloop.accept.criteria import AcceptanceCriteria


class TrainConfig(BaseModel):
    """How to train a model. Defaults suit a few hundred to a few thousand images on a CPU.

    ``task``: ``classification`` learns the dataset's classes; ``anomaly`` learns the good class alone
    (a PatchCore memory bank; see :mod:`inspectloop.anomaly`) and reads the ``anomaly`` settings below;
    the classifier's training settings do not apply to it.

    ``mode``: ``finetune`` trains the trunk's later blocks with production augmentations (best accuracy);
    ``probe`` fits only a linear head on cached frozen-trunk features: a regularised, class-balanced
    logistic regression fitted to convergence (seconds; good when classes are visually distinct; the
    fine-tuning settings ``epochs``, ``lr``, ``weight_decay`` and ``label_smoothing`` do not apply).
    """

    model_config = ConfigDict(extra="forbid")

    backbone: Literal["efficientnet-lite0", "efficientnet-lite2"] = Field(
        "efficientnet-lite0", description="pretrained trunk: efficientnet-lite2 is larger and slower (detectors and "
                                          "classifiers; anomaly models read Lite0's blocks)")
    input_size: int = Field(224, ge=64, le=512, description="square model input in pixels")
    mode: Literal["finetune", "probe"] = Field(
        "finetune", description="finetune (best accuracy) or probe (seconds: a linear head on a frozen trunk)")
    epochs: int = Field(15, ge=1, le=500, description="passes over the training split")
    batch_size: int = Field(32, ge=2, le=512, description="images per optimiser step")
    lr: float = Field(1e-3, gt=0, le=1.0, description="learning rate")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay")
    freeze_blocks: int = Field(2, ge=0, le=16, description="early trunk blocks kept frozen (the stem too when > 0)")
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="share of each label spread over the other classes")
    balance: Literal["sampler", "none"] = Field(
        "sampler", description="sampler: draw classes evenly; none: as often as they occur")
    augment: Literal["production", "light", "none"] = Field(
        "production", description="augmentations: production (lighting, blur, noise, pose), light or none")
    flips: bool = Field(True, description="flip augmentations; turn off when orientation carries meaning")
    pose: Literal["crop", "contain", "zoom"] = Field(
        "crop", description="how augmented shifts, rotations and zooms treat the image's borders: crop (what leaves "
                            "the frame is lost), contain (the whole image stays in view, shrunk to fit; for defects "
                            "on a part's very edge, which a crop would cut away while the label stays) or zoom "
                            "(contain, and half the views zoom in up to 2x around the defect's annotated regions, so "
                            "a part framed tighter than in training, its defect on the edge of the view, is still "
                            "known; needs region annotations on the defect images)")
    ordinal: Literal["auto", "on", "off"] = Field(
        "auto", description="graded classes (inspectloop classes grade): train towards grade-aware label "
                            "distributions plus a cumulative 'grade >= g' term; auto: when the dataset's classes "
                            "are graded")
    ordinal_spread: float = Field(0.5, ge=0, le=4, description="ordinal: width, in grades, of an image's target over "
                                                                 "the neighbouring grades (0: one-hot)")
    ordinal_weight: float = Field(1.0, ge=0, le=10, description="ordinal: weight of the cumulative 'grade >= g' term")
    soft_labels: bool = Field(True, description="train towards the manifests' defect_probability where given")
    probe_views: int = Field(1, ge=1, le=16, description="augmented views per image cached in probe mode")
    head_refit: bool = Field(True, description="finetune: after training, refit the linear head as the probe fits "
                             "its own (regularised, class-balanced logistic regression on the fine-tuned trunk's "
                             "features of the training images); held magnetic tile's unseen sessions at 1.7% good "
                             "rejected against 23.6% without it (see the README)")
    head_blend: float = Field(0.0, ge=0, le=1, description="finetune with head_refit: share of the fine-tuned "
                              "head kept in the final one, the rest the refitted head's (both are linear on the same "
                              "features, so the blend is one linear layer: its logits are the blend of theirs)")
    ensemble: int = Field(1, ge=1, le=5, description="finetune: members fine-tuned alike from seeds seed, seed+1, "
                          "..., the model averaging their class probabilities; each member's own mistakes on an "
                          "unseen session are outvoted (magnetic tile: see the README), at this many times the "
                          "training and inference time and model size")
    probe_c: float = Field(0.1, gt=0, le=1e6, description="probe: inverse strength of the L2 penalty of its "
                           "class-balanced logistic regression on standardised features (smaller: stronger; 0.1 "
                           "held magnetic tile across sessions, see the README)")
    patience: int = Field(0, ge=0, description="stop after this many epochs without val improvement (0 = never)")
    max_minutes: float | None = Field(
        None, gt=0, description="fine-tuning time budget in minutes: stop before an epoch that would end past it and "
                                "keep the best epoch so far (a budget shorter than one epoch is refused)")
    jpeg_draft: bool = Field(False, description="decode JPEGs at reduced size when the model input is small (faster)")
    precision: Literal["auto", "bf16", "float32"] = Field(
        "auto", description="fine-tuning arithmetic: float32, bf16 (autocast through oneDNN: faster on a CPU with "
                            "AVX-512 BF16 or AMX), or auto (bf16 where the CPU has it, else float32); scoring, "
                            "calibration and the exported model stay float32. With channels_last it trains about 2x "
                            "the images per second at the same test accuracy within seed noise (issue 16's "
                            "benchmark); set float32 to train exactly as on a CPU without bf16")
    channels_last: bool = Field(True, description="fine-tune in channels-last memory layout (faster convolutions "
                                                  "on a CPU; other rounding than NCHW, so another seeded model)")
    compile: bool = Field(False, description="torch.compile the training step: faster steps after a compile of "
                                             "minutes, so it pays only on long runs (needs a C++ compiler)")
    image_cache: bool = Field(True, description="keep decoded, resized images in the workspace (keyed by image and "
                                                "preprocessing) so later runs and resumes skip decoding")
    standardise: bool = Field(False, description="bring each image to a fixed mean and contrast inside the model, "
                              "before the backbone: holds a model across sessions whose exposure or lighting "
                              "differ (magnetic tile: see the README). Leave off when a class is defined by overall "
                              "brightness (an over- or under-exposed part)")
    colour: Literal["auto", "L", "RGB"] = Field(
        "auto", description="decode as greyscale (L) or colour; auto picks L when every image is greyscale")
    alpha: float = Field(0.01, gt=0, le=0.5, description="escape rate the review band guarantees (needs a calib "
                                                         "split); a run's criteria set it (max_escape_rate)")
    confidence: float = Field(DEFAULT_CONFIDENCE, gt=0, lt=1, description="confidence of that guarantee")
    guarantee: Literal["pac", "marginal"] = Field(
        "pac", description="pac: escape rate <= alpha with that confidence; marginal: on average over calibration "
                           "draws (needs far fewer calibration images)")
    recall_targets: dict[str, float] = Field(
        default_factory=dict, description="target recall per defect class for its operating point (default by "
                                          "severity: critical 99%, major 97%, minor 95%)")
    novelty_rate: float = Field(0.01, ge=0, lt=0.5, description="novelty guard: share of held-out images of known "
                                "classes whose distance to every training image sends a pass to review (0 = no guard)")
    seed: int = Field(0, ge=0, le=2**32 - 5, description="seed of every random draw: the same seed, data and code give "
                      "the same model (0 to 2^32 - 5: numpy's range, less the ensemble's seed + 4)")
    threads: int = Field(0, ge=0, description="torch threads (0 = all cores)")
    band_fit: Literal["split", "crossfit"] = Field(
        "split", description="what the temperature, review band and operating points are fitted on: split = the "
                             "calib split (guarantee as set above); crossfit = out-of-fold scores of train + calib "
                             "(folds models plus the shipped refit: folds + 1 trainings; guarantee 'crossfit', "
                             "marginal, 2 x alpha worst case for the fold models together, approximate for the refit)")
    folds: int = Field(5, ge=2, le=20, description="crossfit: number of folds")
    fold_by: Literal["group", "part_id", "session", "camera", "line"] = Field(
        "group", description="crossfit: what keeps images together in one fold: the dataset version's group key, "
                             "or a capture field (session: out-of-fold scores come from models that never saw that "
                             "session, as a new session on the line)")
    task: Literal["classification", "anomaly", "detect"] = Field(
        "classification", description="classification (learn every class), anomaly (learn the good class alone; "
                                      "defect images only report and fit the escape side) or detect (boxes from the "
                                      "version's region annotations)")
    good_class: str | None = Field(None, description="anomaly: the class the model learns (default: the dataset's "
                                                    "good class)")
    false_reject_target: float = Field(0.02, gt=0, le=0.5, description="anomaly: share of good parts the threshold "
                                       "may reject, certified on held-out good images (confidence and guarantee "
                                       "as above)")
    coreset_ratio: float = Field(0.04, gt=0, le=1, description="anomaly: share of training patches kept in the "
                                                                "memory bank")
    max_bank: int = Field(8192, ge=16, le=65536, description="anomaly: most memory-bank rows (sets inference time "
                                                             "and file size)")
    patch_blocks: tuple[int, ...] = Field((4, 10), min_length=1, max_length=4, description="anomaly: backbone "
                                          "blocks whose activations make the patch features, increasing, 0-15 "
                                          "(4, 10: mid-level texture; 14, 15: the deepest, for parts whose good "
                                          "surfaces vary, e.g. KolektorSDD's commutators)")
    patch_stride: Literal[8, 16, 32] = Field(16, description="anomaly: input pixels per patch (16: 4x faster, "
                                                             "coarser heatmaps; 32: 4x faster again, for deep "
                                                             "patch_blocks such as 14,15 on large inputs)")
    score_share: float = Field(1.0, ge=0, le=1, description="anomaly: the image score is the mean of its largest "
                               "patch scores, this share of its patches (1: all of them; a small share, e.g. 0.06, "
                               "for thin defects on large parts; 0: the single largest)")
    input_height: int | None = Field(None, ge=64, le=2048, description="anomaly: input rows when the input is not "
                                     "square (input_size is then its width): long parts keep their aspect, e.g. "
                                     "224 x 576 for 500 x 1260 px parts; a multiple of 16")
    tile_overlap: int = Field(64, ge=0, le=1024, description="detect: pixels shared by neighbouring tiles of a "
                                                             "frame larger than the model input")
    tile_scale: float | None = Field(None, ge=0.125, le=8, description="detect: zoom of a frame larger than the model "
                                     "input before it is tiled, in training and at the edge (default: the zoom the "
                                     "training images are held at: input / longer side for images that fit the "
                                     "input, 1 for larger frames; their median)")
    box_threshold: float = Field(0.25, gt=0, lt=1, description="detect: box confidence a box needs to be shown "
                                                                "and to reject the frame, for a class too rare on "
                                                                "validation frames to calibrate (per class: "
                                                                "box_thresholds)")
    box_thresholds: dict[str, float] = Field(default_factory=dict, description="detect: box confidence threshold "
                                             "per class, overriding box_threshold and calibration (no review band)")
    box_precision: float = Field(0.9, gt=0, le=1, description="detect: per class, boxes from the lowest confidence "
                                                              "whose boxes reach this precision on validation frames "
                                                              "reject the frame")
    box_recall: float = Field(0.95, gt=0, le=1, description="detect: per class, weaker boxes down to the confidence "
                                                            "that reaches this recall on validation frames send the "
                                                            "frame to review")
    nms_iou: float = Field(0.5, gt=0, le=1, description="detect: overlap (IoU) above which a weaker box of the same "
                                                        "class is suppressed")
    ema: bool = Field(False, description="detect: validate, keep and export a moving average of the weights over "
                                         "the last steps (the YOLO family's EMA) instead of the last step's weights")
    mosaic: float = Field(0.0, ge=0, le=1, description="detect: share of augmented training views that are a mosaic "
                                                       "of four views around a random centre (the YOLO family's "
                                                       "mosaic); none in the last 15% of the schedule")

    @field_validator("patch_blocks")
    @classmethod
    def _blocks_of_the_backbone(cls, blocks: tuple[int, ...]) -> tuple[int, ...]:
        if not backbone_blocks_in_order(blocks):
            raise ValueError(f"patch_blocks must be increasing block numbers from 0 to {LITE0_LAST_BLOCK} "
                             "(EfficientNet-Lite0's blocks), e.g. 4,10 or 14,15")
        return blocks

    @model_validator(mode="after")
    def _one_budget_one_training(self) -> TrainConfig:
        if self.max_minutes is not None and self.band_fit == "crossfit":
            raise ValueError("max_minutes stops one training, and a cross-fitted run trains folds + 1 models: "
                             "give epochs instead, or band_fit=split")
        if self.input_height is not None and self.task != "anomaly":
            raise ValueError("input_height (a non-square input) applies to anomaly models (task anomaly) only")
        if self.task == "anomaly" and self.backbone != "efficientnet-lite0":
            raise ValueError("anomaly models build patch features from EfficientNet-Lite0's blocks (patch_blocks): "
                             "use backbone=efficientnet-lite0 with task anomaly")
        if self.head_blend and not (self.mode == "finetune" and self.head_refit):
            raise ValueError("head_blend blends the fine-tuned head into the refitted one: it needs mode=finetune "
                             "and head_refit=true (or leave head_blend at 0)")
        if self.max_minutes is not None and self.ensemble > 1:
            raise ValueError("max_minutes stops one training, and an ensemble trains one model per member: give "
                             "epochs instead, or ensemble=1")
        if self.ensemble > 1 and (self.mode != "finetune" or self.task != "classification"):
            raise ValueError("ensemble averages several fine-tuned classifiers: it needs mode=finetune and task "
                             "classification (a probe's or an anomaly model's fit has no random draw to vary)")
        return self


# -- the decisions a run's criteria fix -----------------------------------------------------------

_STRICTER: dict[str, Callable[[Any, Any], bool]] = {  # True when the value is at least as strict as the bound
    "alpha": lambda value, bound: value <= bound,
    "confidence": lambda value, bound: value >= bound,
    "guarantee": lambda value, bound: value == "pac" or bound == "marginal",
    "recall": lambda value, bound: value >= bound,
}


@dataclass(frozen=True)
class Setting:
    """One decision setting of a run: its value and where it came from (``source``, for people).

    ``looser`` is True when the run's own value is looser than the criteria's bound (refused for a new run).
    """

    value: Any
    source: str
    looser: bool = False

    def describe(self) -> str:
        return f"{self.value:g} ({self.source})" if isinstance(self.value, float) else f"{self.value} ({self.source})"


@dataclass(frozen=True)
class DecisionSettings:
    """The settings a run's review band and operating points are fitted with, each with its source.

    ``recall_targets`` holds the defect classes with a target of their own; the others take their
    severity's default (see :func:`inspectloop.decisions.operating_points.target_recalls`).
    """

    alpha: Setting
    guarantee: Setting
    confidence: Setting
    recall_targets: Mapping[str, Setting] = field(default_factory=dict)

    @property
    def looser(self) -> dict[str, Setting]:
        """The settings the run set looser than its criteria, by name."""
        named = {"alpha": self.alpha, "guarantee": self.guarantee, "confidence": self.confidence,
                 **{f"recall_targets.{k}": v for k, v in self.recall_targets.items()}}
        return {name: setting for name, setting in named.items() if setting.looser}

    def apply(self, config: TrainConfig) -> TrainConfig:
        """``config`` with these settings (what the run records)."""
        return config.model_copy(update={
            "alpha": self.alpha.value, "guarantee": self.guarantee.value, "confidence": self.confidence.value,
            "recall_targets": {name: s.value for name, s in self.recall_targets.items()}})

    def describe(self) -> str:
        """One line: each setting with its source."""
        targets = ", ".join(f"{name} {s.describe()}" for name, s in self.recall_targets.items())
        return (f"alpha {self.alpha.describe()}; guarantee {self.guarantee.describe()}; confidence "
                f"{self.confidence.describe()}; recall targets: {targets + '; ' if targets else ''}other defect "
                "classes their severity's default")


def decision_settings(config: TrainConfig, criteria: AcceptanceCriteria | None,
                      defect_classes: Collection[str]) -> DecisionSettings:
    """Where the run's band and operating points take each setting from: ``config`` or the locked ``criteria``.

    The criteria fix ``alpha`` (their ``max_escape_rate``), and with it ``guarantee`` and ``confidence``,
    and the recall target of each of ``defect_classes`` they give a ``min_recall``. A value the config
    sets explicitly (``model_fields_set``) is kept when it is at least as strict as the criteria's (a
    margin) and marked ``looser`` otherwise; a value it leaves at its default yields to the criteria.
    """
    explicit = config.model_fields_set
    escape = None if criteria is None else criteria.max_escape_rate
    where = "" if criteria is None else f"criteria {criteria.name!r} "
    band = {  # guarantee and confidence say how max_escape_rate is certified: they steer only with it
        key: _setting(key, getattr(config, key), None if escape is None else bound, where + field_name,
                      key in explicit)
        for key, bound, field_name in (("alpha", escape, "max_escape_rate"),
                                       ("guarantee", getattr(criteria, "guarantee", None), "guarantee"),
                                       ("confidence", getattr(criteria, "confidence", None), "confidence"))}
    minimums = {} if criteria is None else {name: limits.min_recall for name, limits in criteria.classes.items()
                                            if name in defect_classes and limits.min_recall is not None}
    targets = {name: _setting("recall", config.recall_targets.get(name), minimums.get(name),
                              f"{where}classes.{name}.min_recall", name in config.recall_targets)
               for name in sorted(set(minimums) | set(config.recall_targets))}
    return DecisionSettings(band["alpha"], band["guarantee"], band["confidence"], targets)


def _setting(kind: str, value: Any, bound: Any, bound_name: str, explicit: bool) -> Setting:
    """The config's ``value`` or the criteria's ``bound`` (None: the criteria leave it open), with its source."""
    if bound is None:
        return Setting(value, "run config" if explicit else "default")
    if not explicit or value == bound:
        return Setting(bound, bound_name)
    if _STRICTER[kind](value, bound):
        return Setting(value, f"run config, stricter than {bound_name} {bound}")
    return Setting(value, f"run config, looser than {bound_name} {bound}", looser=True)
