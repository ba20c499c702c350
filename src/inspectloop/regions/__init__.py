"""Region annotations: boxes and outlines per image and annotator, their file formats and agreement.

Pure parts: ``geometry`` (IoU, clipping, masks to outlines), ``agreement`` (IoU matching between
annotators), ``formats`` (one module per file format). Workspace-bound: ``run`` (import, export,
agreement on a workspace).
"""
