"""Drift monitoring: two-sample tests, per-camera drift checks and alert limits, backbone embeddings.

``embeddings`` imports onnxruntime (and ``onnx`` only for files without a ``features`` output);
``statistics`` and ``drift`` need numpy alone.
"""
