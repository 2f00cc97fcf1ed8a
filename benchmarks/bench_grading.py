"""Grading throughput: submissions graded per minute for each assignment, with JOBS=1 and JOBS=2.

Run by hand on an idle machine (not a timed test):

    .venv/bin/python benchmarks/bench_grading.py                 # every assignment, 8 submissions each
    .venv/bin/python benchmarks/bench_grading.py 00_welcome 01_gans --submissions 12 --jobs 1 2

For each assignment a throw-away course gets N submissions (the solution and
the assignment's mistake submissions, cycled), graded through the normal path:
``course_lib.autograde`` workers, bubblewrap sandboxes, grading mode. Reported:
wall time, submissions per minute, and the peak memory (RSS, MiB) of one
worker process and of its biggest kernel, read from /proc while it runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import harness  # noqa: E402
from harness import Course  # noqa: E402


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class PeakMemory:
    """Samples the RSS of grading workers and of ipykernel processes every 0.2 s."""

    def __init__(self):
        self.worker = 0.0
        self.kernel = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
                except OSError:
                    continue
                if b"course_lib.autograde _worker" in cmd:
                    self.worker = max(self.worker, _rss_mib(int(entry)))
                elif b"ipykernel_launcher" in cmd and b"bwrap" not in cmd:
                    self.kernel = max(self.kernel, _rss_mib(int(entry)))
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def bench(assignment: str, submissions: int, jobs: int) -> dict:
    names = harness.notebook_names(assignment)
    mistakes = harness.load_mistakes(assignment)
    with tempfile.TemporaryDirectory() as tmp:
        course = Course(Path(tmp) / "course")
        course.release(assignment)
        for i in range(submissions):
            notebooks = {n: harness.solved(assignment, n) for n in names}
            if i and mistakes:
                m = mistakes[(i - 1) % len(mistakes)]
                notebooks[m.notebook or names[0]] = harness.with_mistake(assignment, m)
            course.submit(f"s{i:03d}", assignment, notebooks)
        course.grade(assignment, jobs=1, students=[])  # warm the caches once, outside the timing
        start = time.perf_counter()
        with PeakMemory() as peak:
            results = course.grade(assignment, jobs=jobs)
        seconds = time.perf_counter() - start
    failed = [r.student for r in results if r.status != "graded"]
    return {
        "assignment": assignment, "jobs": jobs, "n": submissions, "seconds": seconds,
        "per_minute": 60 * submissions / seconds, "worker_mib": peak.worker, "kernel_mib": peak.kernel,
        "failed": failed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("assignments", nargs="*", default=harness.assignments())
    parser.add_argument("--submissions", type=int, default=8)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]
    header = ["assignment", "jobs", "n", "seconds", "per min", "worker MiB", "kernel MiB"]
    print(f"{header[0]:<24} {header[1]:>4} {header[2]:>3} " + " ".join(f"{h:>10}" for h in header[3:]))
    for assignment in args.assignments:
        for jobs in args.jobs:
            r = bench(assignment, args.submissions, jobs)
            line = (f"{r['assignment']:<24} {r['jobs']:>4} {r['n']:>3} {r['seconds']:>10.1f} {r['per_minute']:>10.1f} "
                    f"{r['worker_mib']:>10.0f} {r['kernel_mib']:>10.0f}")
            print(line + (f"  FAILED {r['failed']}" if r["failed"] else ""), flush=True)


if __name__ == "__main__":
    main()
