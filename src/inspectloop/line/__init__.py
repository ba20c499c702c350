"""On the line: acquire frames from cameras and video, group a part's frames into a capture set, decide
it within its deadline, and publish the decision to the line controller (OPC UA, MQTT).

Each piece is usable alone: :mod:`.config` (the station's YAML), :mod:`.acquire` (Basler cameras,
video), :mod:`.capture_sets`, :mod:`.deadline`, :mod:`.publish`. Camera SDKs and protocol stacks sit
behind the ``camera`` and ``line`` extras and are imported only when used.
"""
