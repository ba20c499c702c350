"""Object detection: boxes of defect classes on frames of any size (issue 12).

``model`` (pure ``nn.Module``: backbone, feature pyramid, anchor-free head), ``assign`` and ``loss``
(task-aligned assignment, BCE + GIoU), ``augment`` (box-aware production augmentations), ``data``
(frames and their boxes), ``fit`` (the seeded, resumable training loop), ``metrics`` (COCO mAP and
image-level rates) and ``run`` (the workspace-bound training run). Tiling and box merging live in
the runtime (:mod:`inspectloop.runtime.detection`): the edge tiles frames, not its callers.
"""
