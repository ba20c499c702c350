"""Acceptance: criteria locked before training (``criteria``), and judging a run's model file against them (``run``)."""
