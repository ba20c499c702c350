"""Drift monitoring: two-sample tests, per-camera drift checks and alert limits, backbone embeddings.

``embeddings`` imports onnxruntime (and ``onnx`` only for files without a ``features`` output);
``statistics`` and ``drift`` are pure (numpy); ``run`` is the workspace-bound part: baselines and
checks recorded in the workspace, alerts, drifted images queued for review.
"""
