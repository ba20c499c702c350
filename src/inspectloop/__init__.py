"""inspectloop: train, ship and keep accurate vision models on your own site's images."""

__version__ = "0.1.0"
