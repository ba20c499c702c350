"""The dataset browser's data: a 2-D map of a dataset version's images and what is shown on it.

- :mod:`~inspectloop.datamap.projection`: features to 2-D (PCA, t-SNE; pure, scikit-learn).
- :mod:`~inspectloop.datamap.build`: a version's map, embedded with a frozen backbone and kept in the
  workspace (``maps/``), computed once (workspace-bound).
- :mod:`~inspectloop.datamap.points`: the map's points with labels, predictions and metadata, one image's
  story, and a selection sent to the settle or review queue (workspace-bound).
"""
