"""Out-of-fold class probabilities of labelled images, from frozen backbone features (cheap on a CPU).

The pretrained trunk (:func:`inspectloop.models.backbones.load_backbone`, no fine-tuning) embeds every
image once; a K-fold logistic regression on those features then scores each image with a model that
never saw it, which is what confident learning (:mod:`inspectloop.labelquality.confident`) needs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from inspectloop.errors import LabelError, require

Reader = Callable[[str], bytes]
DEFAULT_FOLDS = 5
_BATCH = 32


def frozen_features(keys: Sequence[str], read: Reader, *, backbone: str = "efficientnet-lite0", input_size: int = 224,
                    progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Pooled features (N, D) float32 of the images ``read(key)`` returns, through the pretrained trunk."""
    torch = require("torch", "train")
    from inspectloop.models.backbones import backbone_spec, load_backbone
    from inspectloop.runtime.images import load_image
    from inspectloop.runtime.preprocess import Preprocess

    spec = backbone_spec(backbone)
    preprocess = Preprocess(input_size, spec.mean, spec.std)
    trunk = load_backbone(backbone, input_size=input_size).eval()
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(keys), _BATCH):
            batch = [preprocess.to_array(preprocess.resize(load_image(read(key), name=key[:12], draft=input_size)))
                     for key in keys[start:start + _BATCH]]
            chunks.append(trunk(torch.from_numpy(np.stack(batch))).numpy())
            if progress:
                progress(min(start + _BATCH, len(keys)), len(keys))
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, spec.feature_dim), np.float32)


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, n_classes: int, *, folds: int = DEFAULT_FOLDS,
                              seed: int = 0, regularization: float = 1.0) -> np.ndarray:
    """(N, K) probabilities, each row from a logistic regression fitted on the other folds (stratified).

    LabelError when a class has fewer than two examples (it cannot be both fitted and scored).
    """
    require("sklearn", "train")  # names the extra when scikit-learn is missing
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=n_classes)
    present = counts[counts > 0]
    if len(present) < 2 or present.min() < 2:
        raise LabelError(f"out-of-fold probabilities need two classes with two images each (counts: {counts.tolist()})",
                         "label more images of the rare classes first")
    splitter = StratifiedKFold(n_splits=int(min(folds, present.min())), shuffle=True, random_state=seed)
    probabilities = np.zeros((len(labels), n_classes))
    for train, held in splitter.split(features, labels):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=regularization, max_iter=2000))
        model.fit(features[train], labels[train])
        probabilities[np.ix_(held, model.classes_)] = model.predict_proba(features[held])
    return probabilities
