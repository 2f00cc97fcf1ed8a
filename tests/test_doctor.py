"""course_lib.doctor: an honest report, [OK] here, [FAIL] naming a broken requirement, and its command line."""

from __future__ import annotations

import io
import subprocess
import sys

from course_lib import doctor


def test_doctor_reports_ok_here():
    out = io.StringIO()
    assert doctor.doctor(out) == 0
    lines = out.getvalue().splitlines()
    assert all(line.startswith(("[OK]", "[--]", "Everything")) for line in lines), lines
    assert any("torch" in line for line in lines)


def test_doctor_fails_honestly_on_a_broken_requirement(monkeypatch):
    real = doctor.metadata.version

    def fake_version(name):
        return "0.1" if name == "tqdm" else real(name)

    monkeypatch.setattr(doctor.metadata, "version", fake_version)
    out = io.StringIO()
    assert doctor.doctor(out) == 1
    assert "[FAIL] tqdm: 0.1 installed, but the course needs >=4.64" in out.getvalue()


def test_doctor_command_line():
    proc = subprocess.run([sys.executable, "-m", "course_lib", "doctor"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[OK]   torch works" in proc.stdout
