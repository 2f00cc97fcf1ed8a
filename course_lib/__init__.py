"""course_lib: the reference implementation of everything the genai-course notebooks teach.

A later notebook imports what an earlier one taught from here, never from the
student's own notebook, so being stuck in one notebook never blocks the next.
"""

from __future__ import annotations

from .env import fast_mode, pick_device, setup

__version__ = "0.1.0"

#: True when training runs should be shrunk to seconds (tests, CI, grading).
#: Read once at import and refreshed by :func:`setup`.
FAST: bool = fast_mode()

__all__ = ["FAST", "__version__", "fast_mode", "pick_device", "setup"]
