"""The round trip's cheap path: graded cells run in one long-lived Python process, scored as nbgrader scores them.

Grading a submission through nbgrader costs a sandboxed kernel, ``import torch``
and the notebook's graded cells (3-5 s). The round trip grades more than a
hundred *honest* mistake submissions (``tests/submissions/``), which only need
their scores, so :class:`Runner` gives each of them what nbgrader would run and
nothing else:

1. **What runs** is what nbgrader's sanitize step makes of the submission: the
   course's own ``Autograde.sanitize_preprocessors`` (from its
   ``nbgrader_config.py``) run here, unchanged -- ``OverwriteCells`` restores the
   instructor's test and read-only cells (hidden tests included) from the
   gradebook, ``SkipExperiments`` (course_lib.autograde.grading_mode) blanks the
   ``experiment`` cells, ``ScreenCells`` (course_lib.autograde.flags) replaces a
   cell that breaks the answer rules by its ``raise``.
2. **Where it runs**: one child process per :class:`Runner` (one per
   assignment), not a Jupyter kernel. Each submission gets a fresh ``__main__``
   module as its namespace, the child's start-up state back (random generators,
   environment, working folder, ``sys.path``, grad mode, default dtype, warning
   filters and their once-only registries), and its figures closed afterwards.
   A cell runs as IPython runs it: the last expression is displayed (an
   ``execute_result``), output to ``sys.stderr`` or file descriptor 2 is a
   ``stderr`` stream, an exception is an ``error`` output, a cell running past
   ``Execute.timeout`` is interrupted.
3. **The score** of each test cell is nbgrader's own ``determine_grade`` on those
   outputs, and a flag (``course_lib.autograde.flags.notebook_flags``, the rule
   ``SaveFlags`` applies) zeroes the test cells it affects.

Only honest submissions belong here: nothing is sandboxed. Whether this path
agrees with nbgrader is not assumed: ``tests/test_roundtrip.py`` grades the
solution, the blank release and some mistakes both ways every run and requires
equal scores.
"""

from __future__ import annotations

import ast
import builtins
import copy
import gc
import io
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import types
from collections.abc import Mapping
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve()


@dataclass
class Result:
    """One submission graded in process: test cell grade_id -> score, the flags, how long it took."""

    student: str
    scores: dict[str, float] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    seconds: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)  # cell label -> the error's last line, for messages
    messages: dict[str, str] = field(default_factory=dict)  # cell label -> the whole error message a student reads


# --------------------------------------------------------------------------
# The parent side: sanitize as nbgrader does, score as nbgrader does
# --------------------------------------------------------------------------


class Runner:
    """Grades submissions of one assignment of the released course at ``root`` (see the module docs).

    ``root`` is an nbgrader course whose gradebook holds the assignment (e.g. a
    :class:`harness.Course` after ``release``): its configuration gives the
    sanitize preprocessors and the cell time limit, its gradebook the
    instructor's cells.
    """

    def __init__(self, root: str | Path, assignment: str, submission_timeout: float = 600.0):
        from course_lib.autograde.batch import load_config

        self.root = Path(root).resolve()
        self.assignment = assignment
        self.config = load_config(self.root)
        self.cell_timeout = int(self.config.Execute.timeout or 0) or None
        self.submission_timeout = submission_timeout
        self._exporter = self._sanitizer()
        self._child: _Child | None = None

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._child is not None:
            self._child.close()
            self._child = None

    def _sanitizer(self):
        """An exporter running the course's ``Autograde.sanitize_preprocessors``, as nbgrader's converter does."""
        from nbconvert.exporters import Exporter
        from nbgrader.coursedir import CourseDirectory
        from traitlets.config import LoggingConfigurable

        class CourseHolder(LoggingConfigurable):  # what nbgrader's converter is to the exporter: it has the coursedir
            pass

        holder = CourseHolder(config=self.config)
        holder.coursedir = CourseDirectory(config=self.config)
        holder.coursedir.root = str(self.root)
        exporter = Exporter(parent=holder, config=self.config)
        exporter._preprocessors = []
        for preprocessor in self.config.Autograde.sanitize_preprocessors:
            exporter.register_preprocessor(preprocessor)
        self.db_url = holder.coursedir.db_url
        return exporter

    def sanitize(self, student: str, name: str, nb) -> object:
        """The notebook nbgrader would execute for ``student``'s notebook ``name``."""
        resources = {"nbgrader": {"student": student, "assignment": self.assignment,
                                  "notebook": Path(name).stem, "db_url": self.db_url},
                     "unique_key": Path(name).stem}
        out, _ = self._exporter.from_notebook_node(copy.deepcopy(nb), resources)
        return out

    def grade(self, student: str, notebooks: Mapping[str, object]) -> Result:
        """Grade one submission (``{notebook file name: notebook}``), its notebooks in order, as nbgrader does."""
        import nbformat
        from nbgrader.utils import determine_grade, is_grade

        from course_lib.autograde.flags import notebook_flags

        start = time.perf_counter()
        result = Result(student)
        for name in sorted(notebooks):
            nb = self.sanitize(student, name, notebooks[name])
            code = [cell for cell in nb.cells if cell.cell_type == "code"]
            outputs = self._run([cell.source for cell in code])
            for cell, cell_outputs in zip(code, outputs):
                cell.outputs = [nbformat.from_dict(o) for o in cell_outputs]
                for o in cell_outputs:
                    if o["output_type"] == "error":
                        label = cell.get("id") or "?"
                        result.messages[label] = f"{o['ename']}: {o['evalue']}"
                        result.errors[label] = result.messages[label][:300]
            scores = {}
            for cell in code:
                if is_grade(cell):
                    scores[cell.metadata["nbgrader"]["grade_id"]] = float(determine_grade(cell)[0])
            flags, affected = notebook_flags(nb, Path(name).stem)
            for tests in affected.values():
                for grade_id in tests:
                    scores[grade_id] = 0.0
            result.scores.update(scores)
            result.flags += [f"{f.notebook}/{f.cell}: {f.reason}" for f in flags]
        result.seconds = time.perf_counter() - start
        return result

    def _run(self, sources: list[str]) -> list[list[dict]]:
        if self._child is None:
            self._child = _Child(self.root / "grading" / "logs" / f"{self.assignment}-inprocess.log")
        reply = self._child.run(sources, self.cell_timeout, self.submission_timeout)
        if reply is None:  # the child died or hung: every cell failed; the next submission gets a new child
            self._child = None
            dead = {"output_type": "error", "ename": "DeadKernelError", "evalue": "the in-process runner died",
                    "traceback": []}
            return [[dead] for _ in sources]
        return reply


class _Child:
    """The long-lived child process and a thread reading its answers (so the parent can wait with a timeout)."""

    def __init__(self, log_path: Path):
        env = dict(os.environ, COURSE_FAST="1", MPLBACKEND="Agg", NBGRADER_EXECUTION="autograde")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(HERE), "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=log, text=True, env=env, start_new_session=True,
            )
        self.replies: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.replies.put(json.loads(line))
        self.replies.put(None)

    def run(self, sources: list[str], cell_timeout: int | None, timeout: float) -> list[list[dict]] | None:
        try:
            self.proc.stdin.write(json.dumps({"cells": sources, "cell_timeout": cell_timeout}) + "\n")
            self.proc.stdin.flush()
            reply = self.replies.get(timeout=timeout)
        except (BrokenPipeError, queue.Empty):
            reply = None
        if reply is None:
            self.kill()
            return None
        return reply["outputs"]

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


# --------------------------------------------------------------------------
# The child side: run cells the way a kernel runs them
# --------------------------------------------------------------------------


class CellTimeout(Exception):
    """A cell ran past the time limit (reported like nbclient's interrupt on time-out)."""


class _Fresh:
    """The child's state at start-up, put back before each submission."""

    def __init__(self):
        import random

        import numpy as np
        import torch

        self.torch_rng = torch.get_rng_state()
        self.random = random.getstate()
        self.numpy = np.random.get_state()
        self.grad = torch.is_grad_enabled()
        self.dtype = torch.get_default_dtype()
        self.threads = torch.get_num_threads()
        self.environ = dict(os.environ)
        self.path = list(sys.path)
        self.main = sys.modules["__main__"]

    def restore(self) -> None:
        import random

        import numpy as np
        import torch

        torch.set_rng_state(self.torch_rng)
        random.setstate(self.random)
        np.random.set_state(self.numpy)
        torch.set_grad_enabled(self.grad)
        torch.set_default_dtype(self.dtype)
        torch.set_num_threads(self.threads)
        os.environ.clear()
        os.environ.update(self.environ)
        sys.path[:] = self.path

    def after(self) -> None:
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:
            pyplot.close("all")
        sys.modules["__main__"] = self.main
        gc.collect()


def _error(exc: BaseException, filename: str) -> dict:
    frames = [line for line in traceback.format_exception(exc) if filename in line or not line.startswith("  File")]
    return {"output_type": "error", "ename": type(exc).__name__, "evalue": str(exc), "traceback": frames[-20:]}


class _CaptureFd2:
    """Output written to file descriptor 2 (C code, subprocesses) while a cell runs: ipykernel captures it too."""

    def __enter__(self):
        sys.stderr.flush()
        self.file = tempfile.TemporaryFile()
        self.saved = os.dup(2)
        os.dup2(self.file.fileno(), 2)
        return self

    def __exit__(self, *exc) -> None:
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.file.seek(0)
        self.text = self.file.read().decode("utf-8", "replace")
        self.file.close()


def run_cell(source: str, namespace: dict, number: int, timeout: int | None) -> list[dict]:
    """Run one cell's source in ``namespace`` and return its outputs as nbformat dicts."""
    from IPython.lib.pretty import pretty

    filename = f"<cell {number}>"
    stdout, stderr = io.StringIO(), io.StringIO()
    outputs: list[dict] = []
    result = error = None

    def on_alarm(signum, frame):
        raise CellTimeout(f"Cell execution timed out after {timeout} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        with _CaptureFd2() as fd2:
            with redirect_stdout(stdout), redirect_stderr(stderr):
                if timeout:
                    signal.setitimer(signal.ITIMER_REAL, timeout)
                try:
                    tree = ast.parse(source, filename)
                    last = None
                    if tree.body and isinstance(tree.body[-1], ast.Expr) and not source.rstrip().endswith(";"):
                        last = ast.Expression(tree.body.pop().value)
                    exec(compile(tree, filename, "exec"), namespace)
                    if last is not None:
                        value = eval(compile(last, filename, "eval"), namespace)
                        if value is not None:
                            namespace["_"] = value
                            result = pretty(value)
                except BaseException as exc:  # noqa: BLE001 - a cell's exception is its error output, whatever it is
                    if isinstance(exc, CellTimeout):
                        exc = TimeoutError(str(exc))  # what nbclient reports: "TimeoutError: Cell execution timed out"
                    error = _error(exc, filename)
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, previous)
    if stdout.getvalue():
        outputs.append({"output_type": "stream", "name": "stdout", "text": stdout.getvalue()})
    if stderr.getvalue() + fd2.text:
        outputs.append({"output_type": "stream", "name": "stderr", "text": stderr.getvalue() + fd2.text})
    if error is not None:
        outputs.append(error)
    elif result is not None:
        outputs.append({"output_type": "execute_result", "execution_count": number, "metadata": {},
                        "data": {"text/plain": result}})
    return outputs


def run_submission(sources: list[str], fresh: _Fresh, timeout: int | None) -> list[list[dict]]:
    """Every cell of one notebook, in order, in a fresh ``__main__``; errors do not stop the later cells."""
    import warnings

    fresh.restore()
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main
    with tempfile.TemporaryDirectory(prefix="inprocess-") as work, warnings.catch_warnings():
        os.chdir(work)
        try:
            return [run_cell(source, main.__dict__, number, timeout) for number, source in enumerate(sources, 1)]
        finally:
            os.chdir(tempfile.gettempdir())
            fresh.after()


def serve() -> None:
    """The child: read jobs (JSON lines) on stdin, answer each with the cells' outputs on stdout."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever a cell's C code prints must not reach the protocol channel
    sys.path[0] = ""  # a kernel's first path entry: its working folder, not tools/
    fresh = _Fresh()
    for line in sys.stdin:
        job = json.loads(line)
        outputs = run_submission(job["cells"], fresh, job.get("cell_timeout"))
        protocol.write(json.dumps({"outputs": outputs}) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        serve()
    else:
        sys.exit("usage: python tools/inprocess.py serve  (started by inprocess.Runner)")
