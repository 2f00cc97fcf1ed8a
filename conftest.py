"""Checks on every notebook cell nbval runs (``make test`` runs the solutions notebooks in FAST mode).

nbval runs with ``--nbval-lax``: a cell fails only when it raises. A cell can also fail quietly, by printing
what a student must never see in a cell that works: the answer rules' refusal of a cell of the notebook itself
(notebook 00's failed-check demo once printed one instead of the check's message). That fails the cell too.
"""

from __future__ import annotations

import pytest

QUIET_FAILURES = ("breaks the course's answer rules",)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield
    outputs = getattr(item, "test_outputs", None) or []  # set by nbval's cell items
    printed = "".join(str(out.get("text", "")) for out in outputs if out.get("output_type") == "stream")
    found = [phrase for phrase in QUIET_FAILURES if phrase in printed]
    if found:
        pytest.fail(f"the cell printed {found[0]!r}, which a working notebook never shows:\n{printed[-2000:]}")
    return result
