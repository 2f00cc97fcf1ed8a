"""`make grade-demo`: autograde, feedback and export work end to end on the bundled examples."""

from __future__ import annotations

import grade_demo
import pytest

pytestmark = pytest.mark.slow


def test_grade_demo_grades_feedbacks_and_exports(tmp_path, capsys):
    rows = {r["student_id"]: r for r in grade_demo.run_demo(tmp_path / "demo")}
    assert set(rows) == {"alice", "bob", "carol", "mallory"}
    assert float(rows["alice"]["score"]) == float(rows["alice"]["max_score"]) > 0
    assert float(rows["bob"]["score"]) == 0
    assert 0 < float(rows["carol"]["score"]) < float(rows["carol"]["max_score"])
    assert float(rows["mallory"]["score"]) == 0 and "get_ipython" in rows["mallory"]["flags"]
    assert not any(rows[s]["flags"] for s in ("alice", "bob", "carol"))
    for student in rows:
        feedback = list((tmp_path / "demo" / "grading" / "feedback" / student / "00_welcome").glob("*.html"))
        assert feedback and "softmax" in feedback[0].read_text(encoding="utf-8")
    table = capsys.readouterr().out
    assert "alice" in table and "total" in table and "flags" in table and "FLAGGED" in table
