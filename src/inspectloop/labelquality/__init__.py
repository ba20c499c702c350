"""Label quality: which labels are probably wrong, how well annotators agree, and settling both.

- :mod:`~inspectloop.labelquality.confident`: confident learning on out-of-fold probabilities (pure numpy).
- :mod:`~inspectloop.labelquality.probabilities`: frozen backbone features and K-fold probabilities.
- :mod:`~inspectloop.labelquality.suspects`: suspected label errors of a dataset version (workspace-bound).
- :mod:`~inspectloop.labelquality.agreement`: Cohen's and Fleiss' kappa, per class and per annotator pair.
- :mod:`~inspectloop.labelquality.boxcheck`: missing, spurious, misplaced and wrong-class boxes of one image (pure).
- :mod:`~inspectloop.labelquality.boxes`: the same for a dataset version, against a detector or an annotator.
- :mod:`~inspectloop.labelquality.settle`: the settle queue and a quality engineer's settle decision.
"""
