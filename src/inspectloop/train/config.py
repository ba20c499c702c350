"""Training configuration: one validated object, surfaced by the CLI, recorded with every run."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TrainConfig(BaseModel):
    """How to train a classifier. Defaults suit a few hundred to a few thousand images on a CPU.

    ``mode``: ``finetune`` trains the trunk's later blocks with production augmentations (best accuracy);
    ``probe`` trains only a linear head on cached frozen-trunk features (seconds; good when classes
    are visually distinct).
    """

    model_config = ConfigDict(extra="forbid")

    backbone: Literal["efficientnet-lite0"] = "efficientnet-lite0"
    input_size: int = Field(224, ge=64, le=512)
    mode: Literal["finetune", "probe"] = "finetune"
    epochs: int = Field(15, ge=1, le=500)
    batch_size: int = Field(32, ge=2, le=512)
    lr: float = Field(1e-3, gt=0, le=1.0)
    weight_decay: float = Field(1e-4, ge=0)
    freeze_blocks: int = Field(2, ge=0, le=16, description="early trunk blocks kept frozen (the stem too when > 0)")
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    balance: Literal["sampler", "none"] = "sampler"
    augment: Literal["production", "light", "none"] = "production"
    flips: bool = Field(True, description="flip augmentations; turn off when orientation carries meaning")
    probe_views: int = Field(1, ge=1, le=16, description="augmented views per image cached in probe mode")
    patience: int = Field(0, ge=0, description="stop after this many epochs without val improvement (0 = never)")
    jpeg_draft: bool = False
    colour: Literal["auto", "L", "RGB"] = Field(
        "auto", description="decode as greyscale (L) or colour; auto picks L when every image is greyscale")
    alpha: float = Field(0.01, gt=0, le=0.5, description="escape rate the review band guarantees (needs a calib split)")
    confidence: float = Field(0.9, gt=0, lt=1, description="confidence of that guarantee")
    guarantee: Literal["pac", "marginal"] = Field(
        "pac", description="pac: escape rate <= alpha with that confidence; marginal: on average over calibration "
                           "draws (needs far fewer calibration images)")
    recall_targets: dict[str, float] = Field(
        default_factory=dict, description="target recall per defect class for its operating point (default by "
                                          "severity: critical 99%, major 97%, minor 95%)")
    seed: int = 0
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
