"""course_lib: the reference implementation of everything the genai-course notebooks teach.

A later notebook imports what an earlier one taught from here, never from the
student's own notebook, so being stuck in one notebook never blocks the next.
"""

from __future__ import annotations

from .env import fast_mode, fast_note, pick_device, setup

__version__ = "0.1.0"


def __getattr__(name: str):
    """``course_lib.FAST``: whether training runs should be shrunk to seconds (tests, CI, grading).

    Computed from the environment each time it is read (:func:`fast_mode`), so it always agrees
    with :func:`setup`'s status line; nothing assigns it.
    """
    if name == "FAST":
        return fast_mode()
    raise AttributeError(f"module 'course_lib' has no attribute {name!r}")


__all__ = ["FAST", "__version__", "fast_mode", "fast_note", "pick_device", "setup"]
