"""Adaptation before labels: a model version re-fitted, without labels, to one camera's recent images.

The pure parts are :mod:`inspectloop.adapt.condition` (the camera's imaging condition read from unlabelled
images, and training images rendered under it), :mod:`inspectloop.adapt.batchnorm` (BatchNorm statistics
re-estimated on unlabelled images) and :mod:`inspectloop.adapt.features` (pooled features re-standardised to
the training images', folded into the linear head); the workspace-bound part is
:mod:`inspectloop.adapt.run` (which images, which model, which method, the candidate version it exports
and registers). Importing this package imports no torch.
"""
