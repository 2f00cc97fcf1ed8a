"""Grade a whole class: N sandboxed workers, resumable, sharded across machines.

``python -m course_lib.autograde grade ASSIGNMENT --jobs N`` (``make grade
A=... JOBS=N``) grades every student under ``grading/submitted/*/ASSIGNMENT``:

- **Workers** are long-lived processes (:func:`worker_main`) that import
  nbgrader once and grade one student at a time through nbgrader's own API
  (``NbGraderAPI.autograde``), so every nbgrader setting -- the sandboxed
  kernel, the screen, the flags, grading mode -- applies exactly as it does to
  ``nbgrader autograde``. The parent only hands out student ids and watches
  the clock: a submission that runs past ``notebook_timeout`` has its worker
  killed (the sandbox dies with it), is recorded as 0 and flagged, and a fresh
  worker takes the next student. One bad submission never costs more than its
  own caps.
- **Resume**: a student whose submission already has a score for every test
  cell in the gradebook is skipped, unless ``force``.
- **Shards**: ``shard=(k, n)`` grades only the students whose id hashes to
  ``k`` of ``n`` (SHA-256, so every machine computes the same split). n jobs
  with a shared PostgreSQL gradebook and shared storage grade a class on a
  cluster (see the README's instructor section).

SQLite is fine for one instructor on one machine (writes are short and
serialised by SQLite's lock); use PostgreSQL (``--db``) for workers on several
machines or several graders at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .flags import flag_failure, flags


@dataclass
class Result:
    """How one student's submission went."""

    student: str
    status: str  # "graded", "failed" (recorded as 0, flagged), "skipped" (already graded)
    seconds: float = 0.0
    score: float | None = None
    max_score: float | None = None
    flags: list[str] = field(default_factory=list)
    detail: str = ""


def shard_of(student: str, n: int) -> int:
    """Which of ``n`` shards (1-based) grades ``student``: the same answer on every machine."""
    return int(hashlib.sha256(student.encode("utf-8")).hexdigest(), 16) % n + 1


def submitted_students(root: Path, assignment: str, submitted: str = "grading/submitted") -> list[str]:
    folder = Path(root) / submitted
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / assignment).is_dir())


def load_config(root: Path, overrides: dict | None = None):
    """The course's nbgrader configuration (``root/nbgrader_config.py``) with ``overrides`` merged in."""
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    extra = Config()
    for dotted, value in (overrides or {}).items():
        section, key = dotted.rsplit(".", 1)
        extra[section][key] = value
    config.merge(extra)
    return config


def _db_url(config) -> str:
    return config.CourseDirectory.db_url


def finished(db_url: str, assignment: str) -> dict[str, tuple[float, float]]:
    """student -> (score, max score) for every submission with a score on every test cell."""
    from nbgrader.api import Gradebook

    done = {}
    with Gradebook(db_url) as gb:
        for submission in gb.find_assignment(assignment).submissions:
            grades = [g for nb in submission.notebooks for g in nb.grades if g.cell.cell_type == "code"]
            if grades and all(g.auto_score is not None or g.manual_score is not None for g in grades):
                done[submission.student.id] = (float(submission.score), float(submission.max_score))
    return done


# --------------------------------------------------------------------------
# The worker: one process, many students
# --------------------------------------------------------------------------


def worker_main(root: str, overrides_json: str) -> None:
    """Read student ids (JSON lines) on stdin, grade each, answer one JSON line each on stdout."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # nbgrader and the kernels print; keep that off the protocol channel
    os.chdir(root)
    warnings.filterwarnings("ignore", message=".*not in session.*")  # nbgrader's add_submission, harmless
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    config = load_config(Path(root), json.loads(overrides_json))
    coursedir = CourseDirectory(config=config)
    coursedir.root = root
    api = NbGraderAPI(coursedir=coursedir, config=config)
    for line in sys.stdin:
        job = json.loads(line)
        start = time.perf_counter()
        result = api.autograde(job["assignment"], job["student"], force=True, create=True)
        print(f"===== {job['assignment']} {job['student']}\n{result.get('log', '')}{result.get('error') or ''}",
              file=sys.stderr, flush=True)
        reply = {
            "student": job["student"],
            "success": bool(result.get("success")),
            "seconds": time.perf_counter() - start,
            "error": (result.get("error") or "")[-4000:],
            "log": (result.get("log") or "")[-20000:],
        }
        protocol.write(json.dumps(reply) + "\n")


class _Worker:
    """A worker process and a thread that reads its answers (so the parent can wait with a timeout)."""

    def __init__(self, root: Path, overrides: dict, log_path: Path):
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "course_lib.autograde", "_worker", str(root), json.dumps(overrides)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, cwd=root,
            start_new_session=True,  # killing the worker's session kills its kernels too
        )
        self.replies: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.replies.put(json.loads(line))
        self.replies.put(None)  # the worker died

    def grade(self, assignment: str, student: str, timeout: float) -> dict | None:
        """The worker's reply, or None if it died or ran past ``timeout`` (then it is killed)."""
        try:
            self.proc.stdin.write(json.dumps({"assignment": assignment, "student": student}) + "\n")
            self.proc.stdin.flush()
            reply = self.replies.get(timeout=timeout)
        except (BrokenPipeError, queue.Empty):
            reply = None
        if reply is None:
            self.kill()
        return reply

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, 9)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.log.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def grade_class(
    root: str | Path,
    assignment: str,
    *,
    jobs: int = 1,
    shard: tuple[int, int] = (1, 1),
    students: list[str] | None = None,
    force: bool = False,
    db_url: str | None = None,
    allow_unsandboxed: bool = False,
    cell_timeout: int | None = None,
    notebook_timeout: float = 900.0,
    progress: Callable[[str], None] = print,
) -> list[Result]:
    """Grade ``assignment`` for every submitted student (or ``students``) of this shard; see the module docs."""
    root = Path(root).resolve()
    k, n = shard
    if not 1 <= k <= n:
        raise ValueError(f"shard must be k/n with 1 <= k <= n, got {k}/{n}")
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    overrides: dict = {}
    if db_url:
        overrides["CourseDirectory.db_url"] = db_url
    if allow_unsandboxed:
        overrides["SandboxedKernelManager.allow_unsandboxed"] = True
    if cell_timeout:
        overrides["Execute.timeout"] = int(cell_timeout)
    config = load_config(root, overrides)
    db = _db_url(config)
    _check_sandbox(allow_unsandboxed, progress)
    _check_assignment(db, assignment)
    _warm_caches(root, assignment, progress)

    everyone = students if students is not None else submitted_students(root, assignment)
    mine = [s for s in everyone if shard_of(s, n) == k] if n > 1 else list(everyone)
    done = {} if force else finished(db, assignment)
    results: list[Result] = [Result(s, "skipped", score=done[s][0], max_score=done[s][1]) for s in mine if s in done]
    todo = [s for s in mine if s not in done]
    total = len(mine)
    progress(
        f"grading {assignment}: {len(todo)} to grade, {len(results)} already graded"
        + (f" (shard {k}/{n} of {len(everyone)} students)" if n > 1 else "")
        + f", {jobs} worker{'s' if jobs > 1 else ''}"
    )
    if not todo:
        return results

    log_dir = root / "grading" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    work: queue.Queue = queue.Queue()
    for student in todo:
        work.put(student)
    lock = threading.Lock()
    counter = [len(results)]

    def run(slot: int) -> None:
        worker = None
        while True:
            try:
                student = work.get_nowait()
            except queue.Empty:
                break
            if worker is None:
                worker = _Worker(root, overrides, log_dir / f"{assignment}-worker{slot}.log")
            start = time.perf_counter()
            reply = worker.grade(assignment, student, notebook_timeout)
            seconds = time.perf_counter() - start
            if reply is None:
                dead = worker.proc.returncode
                worker = None
                why = (
                    f"grading stopped after the notebook time limit ({notebook_timeout:.0f} s)"
                    if seconds >= notebook_timeout * 0.99
                    else f"the grading worker died (exit {dead})"
                )
                result = _record_failure(db, assignment, student, why, seconds)
            elif not reply["success"]:
                why = _failure_reason(reply)
                result = _record_failure(db, assignment, student, why, seconds)
            else:
                result = _graded(db, assignment, student, seconds)
            with lock:
                results.append(result)
                counter[0] += 1
                progress(_line(counter[0], total, result))
        if worker is not None:
            worker.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(min(jobs, len(todo)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(results, key=lambda r: r.student)


def _failure_reason(reply: dict) -> str:
    text = reply.get("error", "") + reply.get("log", "")
    if "DeadKernelError" in text or "Kernel died" in text or "kernel died" in text:
        return "the kernel died while grading (a crash, os._exit, or a cap)"
    if any(word in text for word in ("NotJSONError", "not valid JSON", "JSONDecodeError", "not appear to be JSON")):
        return "a submitted notebook is not valid JSON"
    if "needs a sandbox" in text:
        raise RuntimeError(text[-2000:])
    last = [line for line in text.splitlines() if line.strip()][-1:] or ["unknown error"]
    return f"nbgrader could not grade it ({last[0][:200]})"


def _record_failure(db: str, assignment: str, student: str, why: str, seconds: float) -> Result:
    flag_failure(db, assignment, student, why)
    result = _graded(db, assignment, student, seconds)
    result.status = "failed"
    result.detail = why
    return result


def _graded(db: str, assignment: str, student: str, seconds: float) -> Result:
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db) as gb:
        try:
            submission = gb.find_submission(assignment, student)
            score, max_score = float(submission.score), float(submission.max_score)
        except MissingEntry:
            score, max_score = 0.0, None
    found = flags(db, assignment).get((assignment, student), [])
    return Result(student, "graded", seconds, score, max_score, found)


def _line(i: int, total: int, r: Result) -> str:
    width = len(str(total))
    score = f"{r.score:g}/{r.max_score:g}" if r.score is not None and r.max_score else "0"
    text = f"[{i:>{width}}/{total}] {r.student:<24} {score:>9}  {r.seconds:6.1f} s"
    if r.status == "failed":
        text += f"  FAILED: {r.detail}"
    if r.flags:
        text += "  FLAGGED: " + "; ".join(r.flags)
    return text


def _check_sandbox(allow_unsandboxed: bool, progress: Callable[[str], None]) -> None:
    from .sandbox import sandbox_status

    ok, why = sandbox_status()
    if ok:
        return
    if not allow_unsandboxed:
        raise RuntimeError(
            f"no sandbox on this machine ({why}): grading would run every student's code with your rights. "
            "Install bubblewrap (apt install bubblewrap) or, to grade anyway, pass --unsafe-no-sandbox."
        )
    progress("!" * 78)
    progress(f"WARNING: grading WITHOUT a sandbox ({why}). Student code runs with your rights.")
    progress("!" * 78)


def _check_assignment(db: str, assignment: str) -> None:
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db) as gb:
        try:
            gb.find_assignment(assignment)
        except MissingEntry:
            raise RuntimeError(
                f"assignment {assignment!r} is not in the gradebook {db}: run `make release` "
                f"(nbgrader generate_assignment {assignment}) first"
            ) from None


def _warm_caches(root: Path, assignment: str, progress: Callable[[str], None]) -> None:
    """Build what sandboxed kernels only read (they cannot write the course cache): corpora, checkpoints.

    Runs once per batch, outside the sandbox, in FAST mode as grading does.
    """
    sources = "".join(p.read_text(encoding="utf-8") for p in (root / "solutions" / assignment).glob("*.ipynb"))
    code = []
    if "text_corpus" in sources or "pretrained_gpt" in sources:
        code.append("from course_lib.data import text_corpus; text_corpus('docstrings', 'train')")
    if "pretrained_gpt" in sources:
        code.append(
            "from course_lib.pretrained import FAST_RECIPE, pretrained_gpt; pretrained_gpt(FAST_RECIPE, progress=False)"
        )
    if not code:
        return
    start = time.perf_counter()
    env = dict(os.environ, COURSE_FAST="1")
    subprocess.run([sys.executable, "-c", "\n".join(code)], cwd=root, env=env, check=True, capture_output=True)
    progress(f"course cache ready for {assignment} ({time.perf_counter() - start:.1f} s)")
