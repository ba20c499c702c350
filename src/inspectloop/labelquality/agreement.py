"""How well annotators agree: per class, per pair of annotators, and each with the settled label.

Cohen's kappa for a pair comes from scikit-learn (``cohen_kappa_score``). Fleiss' kappa (any number of
annotators per image) is the formula of Fleiss (1971), generalised to images with different numbers of
annotators: with n_ij the annotators who gave image i class j and m_i = sum_j n_ij >= 2,

    P_i = sum_j n_ij (n_ij - 1) / (m_i (m_i - 1))      observed agreement on image i
    p_j = sum_i n_ij / sum_i m_i                       share of class j among all words
    kappa = (mean_i P_i - sum_j p_j^2) / (1 - sum_j p_j^2)

and a class's own kappa is the same formula on the two columns (that class, any other). It is a dozen
lines of numpy, so no statistics package is added for it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from inspectloop.domain import Annotation
from inspectloop.domain.labelling import SETTLED
from inspectloop.errors import LabelError, require
from inspectloop.labels import resolve_labels
from inspectloop.workspace import Workspace


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' kappa of an (images, classes) count matrix; rows with fewer than two words are left out.

    None when it is undefined (no image with two words, or every word the same class).
    """
    counts = np.asarray(counts, dtype=np.float64)
    raters = counts.sum(axis=1)
    counts, raters = counts[raters >= 2], raters[raters >= 2]
    if len(counts) == 0:
        return None
    observed = np.mean((counts * (counts - 1)).sum(axis=1) / (raters * (raters - 1)))
    shares = counts.sum(axis=0) / raters.sum()
    expected = float(np.sum(shares ** 2))
    return None if expected >= 1.0 else float((observed - expected) / (1.0 - expected))


def cohen_kappa(first: list[str], second: list[str]) -> float | None:
    """Cohen's kappa of two annotators' classes on the same images (None when undefined: one class only)."""
    if len(set(first) | set(second)) < 2:
        return None
    require("sklearn", "train")
    from sklearn.metrics import cohen_kappa_score

    return float(cohen_kappa_score(first, second))


@dataclass(frozen=True)
class PairAgreement:
    """Two annotators on the images they both labelled: agreement, kappa, and who said what (confusion)."""

    first: str
    second: str
    images: int
    agreement: float
    kappa: float | None
    confusion: dict[str, dict[str, int]]  # first's class -> second's class -> images


@dataclass(frozen=True)
class ClassAgreement:
    """A class's Fleiss kappa (class vs any other) over the images with two or more annotators."""

    name: str
    annotators: list[str]  # who labelled an image that someone gave this class
    kappa: float | None
    note: str = ""  # why kappa is None


@dataclass(frozen=True)
class SettledAgreement:
    """An annotator against the label the labelling policy settles on (settled decisions included)."""

    annotator: str
    images: int
    agreement: float
    kappa: float | None


@dataclass(frozen=True)
class AgreementReport:
    overall_kappa: float | None  # Fleiss over every class
    classes: list[ClassAgreement]
    pairs: list[PairAgreement]
    annotators: list[SettledAgreement]


def latest_words(annotations: list[Annotation]) -> dict[str, dict[str, str]]:
    """image -> annotator -> their latest class, settle decisions left out (they are the reference)."""
    words: dict[str, dict[str, str]] = defaultdict(dict)
    for annotation in annotations:
        if annotation.source != SETTLED:
            words[annotation.sha256][annotation.annotator] = annotation.class_name
    return words


def agreement_report(workspace: Workspace, class_name: str | None = None) -> AgreementReport:
    """Agreement between the workspace's annotators; with ``class_name``, that class only (LabelError when
    fewer than two annotators labelled it, or none of its images has two annotators)."""
    classes = list(workspace.db.labels.classes())
    if class_name is not None and class_name not in classes:
        raise LabelError(f"unknown class {class_name!r} (known: {', '.join(classes) or 'none yet'})",
                         "name one of the defined classes")
    annotations = workspace.db.labels.annotations()
    words = latest_words(annotations)
    per_class = [class_agreement(words, name) for name in ([class_name] if class_name else classes)]
    if class_name is not None and per_class[0].kappa is None:
        raise LabelError(f"no kappa for class {class_name!r}: {per_class[0].note}",
                         "have a second annotator label some of the same images (the review queue does this)")
    multi = [row for row in words.values() if len(row) >= 2]
    counts = np.array([[Counter(row.values())[c] for c in classes] for row in multi]).reshape(len(multi), len(classes))
    settled = resolve_labels(annotations, workspace.config.labelling).labels
    return AgreementReport(fleiss_kappa(counts), per_class, pair_agreements(words), settled_agreement(words, settled))


def class_agreement(words: dict[str, dict[str, str]], name: str) -> ClassAgreement:
    """Fleiss kappa of ``name`` against every other class, on the images with two or more annotators."""
    users = sorted({a for row in words.values() if name in row.values() for a in row})
    if len(users) < 2:
        who = f"one annotator ({users[0]})" if users else "no annotator"
        return ClassAgreement(name, users, None, f"its images have {who}; agreement needs two on the same images")
    if not any(len(row) >= 2 and name in row.values() for row in words.values()):
        return ClassAgreement(name, users, None, "none of its images has two annotators")
    multi = np.array([[sum(v == name for v in row.values()), sum(v != name for v in row.values())]
                      for row in words.values() if len(row) >= 2])
    kappa = fleiss_kappa(multi)
    return ClassAgreement(name, users, kappa, "" if kappa is not None else "every word is the same class")


def pair_agreements(words: dict[str, dict[str, str]]) -> list[PairAgreement]:
    """Every pair of annotators with images in common: agreement, Cohen's kappa, confusion."""
    annotators = sorted({a for row in words.values() for a in row})
    pairs = []
    for first, second in combinations(annotators, 2):
        shared = [(row[first], row[second]) for row in words.values() if first in row and second in row]
        if not shared:
            continue
        confusion: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for a, b in shared:
            confusion[a][b] += 1
        a_labels, b_labels = [a for a, _ in shared], [b for _, b in shared]
        pairs.append(PairAgreement(first, second, len(shared), float(np.mean([a == b for a, b in shared])),
                                   cohen_kappa(a_labels, b_labels),
                                   {k: dict(v) for k, v in sorted(confusion.items())}))
    return pairs


def settled_agreement(words: dict[str, dict[str, str]], settled: dict[str, str]) -> list[SettledAgreement]:
    """Each annotator against the label the policy gives each of their images."""
    given: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for digest, row in words.items():
        if digest in settled:
            for annotator, label in row.items():
                given[annotator].append((label, settled[digest]))
    return [SettledAgreement(annotator, len(rows), float(np.mean([a == b for a, b in rows])),
                             cohen_kappa([a for a, _ in rows], [b for _, b in rows]))
            for annotator, rows in sorted(given.items())]
