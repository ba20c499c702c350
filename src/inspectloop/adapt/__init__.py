"""Adaptation before labels: a model version re-fitted, without labels, to one camera's recent images.

The pure part is :mod:`inspectloop.adapt.batchnorm` (BatchNorm statistics re-estimated on unlabelled
images); the workspace-bound part is :mod:`inspectloop.adapt.run` (which images, which model, the
candidate version it exports and registers). Importing this package imports no torch.
"""
