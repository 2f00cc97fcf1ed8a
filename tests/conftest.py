"""Shared test setup: tools/ on the import path, FAST mode, a headless plot backend."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
os.environ.setdefault("COURSE_FAST", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

# pytest-xdist runs two workers on a 2-core machine: one thread each avoids oversubscription.
torch.set_num_threads(1)
