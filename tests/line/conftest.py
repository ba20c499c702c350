"""Line tests: pylon's camera emulation (two emulated cameras, no hardware), read when pylon first loads."""

from __future__ import annotations

import os

os.environ.setdefault("PYLON_CAMEMU", "2")
