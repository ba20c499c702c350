"""Camera health: is each camera still seeing the line as it did at deployment?

- :mod:`inspectloop.camera.health`: the pure part. Flat-field uniformity and vignetting, lighting
  intensity and slanted-edge MTF50 measured on target captures, a :class:`~inspectloop.camera.health.CameraBaseline`
  and the pass / warn / fail grading against it. numpy and Pillow only.
- :mod:`inspectloop.camera.run`: the workspace-bound part. Records a camera's baseline, stores its
  checks, and on a failure marks the camera's predictions suspect and raises an alert.

Nothing is re-exported here, so importing the measurements does not load the workspace.
"""
