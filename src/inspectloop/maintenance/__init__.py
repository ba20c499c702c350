"""Keeping a workspace sound: ``doctor`` (check and safely repair) and ``backup`` / ``restore``."""
