"""Serving: the inspection service on the line, its durable prediction log, and the folder watcher.

- ``service``: :class:`~inspectloop.serve.service.InspectionService` checks and decodes a request once,
  predicts with the production model, runs the shadow model beside it, and swaps models on promotion;
  :class:`~inspectloop.serve.service.ServiceConfig` is what ``inspectloop serve`` surfaces.
- ``prediction_log``: :class:`~inspectloop.serve.prediction_log.PredictionLog`, the group-committing
  writer (one row per request id, kept images and their statistics, review items for uncertain
  predictions and consequential shadow disagreements) and ``record_qc`` for human QC verdicts.
- ``watch``: :class:`~inspectloop.serve.watch.FolderWatcher`, for cameras that drop files in a folder.

The HTTP layer over the service is ``inspectloop.web``; the shadow report is ``inspectloop.shadow``.
"""
