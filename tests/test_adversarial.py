"""Grading against students who cheat or harm: every attempt scores 0 and is flagged; honest work keeps its score.

Two batches of the welcome assignment (the cheapest notebook), each graded by
``course_lib.autograde`` with two parallel sandboxed workers, as an instructor
would grade a class:

1. **Screened** (the normal configuration): blank submissions whose first
   answer cell tries, at least twice per threat class, to score without
   solving the exercise -- IPython hooks, patching the checks or torch,
   frame/gc introspection, lying objects, reading the instructor's files,
   obfuscated versions of those -- or to harm other students. Each must score
   0 and be flagged with a reason; honest submissions in the same batch keep
   their exact scores and are not flagged. The sandboxed nbgrader batch holds
   the honest submissions, the cheats placed outside the answer cells, the
   harmful ones and one cheat of each threat class (``THROUGH_NBGRADER``);
   every cheat is also graded by ``tools/inprocess.py`` (the same sanitize
   preprocessors, so the same screen, then the cells in a child process:
   about a second each instead of a kernel), and
   ``test_in_process_verdicts_equal_nbgrader_verdicts`` requires both paths
   to agree on every submission they share. A screened cheat never runs in
   either path; one the screen missed would run unflagged in both, and fail
   the flag assertion in both.
2. **Sandbox only** (the screen switched off, so the cells really run): code
   that deletes other students' work, rewrites the gradebook, reads the
   solutions, allocates far past the memory cap, forks without limit, opens a
   network connection, sleeps forever ignoring interrupts, and kills its own
   kernel. The sandbox must contain each: 0 points, caps and the dead kernel
   flagged, the honest submission graded in the same batch, the course folder
   unchanged.

Caps are set low here (memory, processes, time) so the bombs are cheap and
safe on a 24 GB CI machine.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from pathlib import Path

import harness
import inprocess
import pytest
from harness import Course

pytestmark = pytest.mark.slow

ASSIGNMENT = "00_welcome"
NOTEBOOK = "welcome.ipynb"
POINTS = 6.0

# --------------------------------------------------------------------------
# Attempts to score without solving (each replaces the blank `softmax` answer cell)
# --------------------------------------------------------------------------

CHEATS = {
    # IPython hooks: make every later cell a no-op, or swallow the checks' errors
    "hook-input-transformer": '''
get_ipython().input_transformers_cleanup.append(lambda lines: ["pass\\n"])
''',
    "hook-custom-exc": '''
ip = get_ipython()
ip.set_custom_exc((BaseException,), lambda shell, etype, value, tb, tb_offset=None: None)
''',
    "hook-events": '''
def _forget(result):
    result.error_in_exec = None
get_ipython().events.register("post_run_cell", _forget)
''',
    "hook-magic": '''
%config InteractiveShell.ast_node_interactivity = "none"
%xmode Minimal
''',
    # patching the checks, torch, builtins, sys.modules
    "patch-checks": '''
import course_lib.grading as grading
grading.check_function = lambda *args, **kwargs: None
grading.forbid_reference = lambda *args, **kwargs: None
grading.check_close = lambda *args, **kwargs: None
''',
    "patch-sys-modules": '''
import sys
sys.modules["course_lib.grading"].check_function = lambda *args, **kwargs: None
sys.modules["course_lib.grading"].forbid_reference = lambda *args, **kwargs: None
''',
    "patch-via-alias": '''
from course_lib import grading as g
checks = g
checks.check_function = print
checks.forbid_reference = print
''',
    "patch-setattr": '''
import course_lib.grading
for name in ["check_function", "forbid_reference", "check_close"]:
    setattr(course_lib.grading, name, lambda *a, **k: None)
''',
    "patch-builtins": '''
import builtins
builtins.AssertionError = type("Fine", (Exception,), {})
''',
    "patch-torch": '''
torch.allclose = lambda *args, **kwargs: True
torch.Tensor.__sub__ = lambda self, other: torch.zeros_like(self)
''',
    # introspection: take the expected answer out of the checker's frame, or find the reference
    "frame-steal-reference": '''
import sys


def softmax(x, dim=-1):
    return sys._getframe(2).f_locals["reference_fn"](x=x, dim=dim)
''',
    "frame-generator": '''
def softmax(x, dim=-1):
    def probe():
        yield
    gen = probe()
    frame = gen.gi_frame.f_back.f_back
    return frame.f_locals["reference_fn"](x=x, dim=dim)
''',
    "gc-find-reference": '''
import gc


def softmax(x, dim=-1):
    for obj in gc.get_objects():
        if callable(obj) and getattr(obj, "__module__", "") == "course_lib.basics" and obj.__name__ == "softmax":
            return obj(x, dim)
''',
    # objects that misreport comparisons, shape, dtype or type
    "lying-tensor": '''
class Agreeable(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return torch.tensor(0.0) if func.__name__ in ("sub", "__sub__", "abs") else True

    def __eq__(self, other):
        return True


def softmax(x, dim=-1):
    return torch.zeros_like(x).as_subclass(Agreeable)
''',
    "lying-object": '''
class Anything:
    shape = property(lambda self: self.other.shape)
    dtype = torch.float32

    def __eq__(self, other):
        self.other = other
        return True

    def __sub__(self, other):
        return torch.zeros(())


def softmax(x, dim=-1):
    return Anything()
''',
    "lying-type-call": '''
Yes = type("Yes", (torch.Tensor,), {"__eq__": lambda self, other: True})


def softmax(x, dim=-1):
    return x.as_subclass(Yes)
''',
    # reading the instructor's files
    "read-solution": '''
import json

nb = json.load(open("../../../../solutions/00_welcome/welcome.ipynb"))
exec("".join(next(c["source"] for c in nb["cells"] if c.get("id") == "softmax")))
''',
    "read-solution-pathlib": '''
from pathlib import Path

text = Path("/").joinpath("work", "main", "solutions", "00_welcome", "welcome.ipynb").read_text()
''',
    # obfuscation
    "obfuscated-eval": '''
ev = getattr(__builtins__, "ev" + "al")
ev("get_" + "ipython()").set_custom_exc((Exception,), lambda *a, **k: None)
''',
    "obfuscated-subclasses": '''
for klass in ().__class__.__base__.__subclasses__():
    if klass.__name__ == "catch_warnings":
        klass()._module.__builtins__["__import__"]("os").system("true")
''',
    # harming others
    "harm-delete-others": '''
import shutil

shutil.rmtree("../../../submitted", ignore_errors=True)
''',
    "harm-gradebook": '''
import sqlite3

db = sqlite3.connect("../../../gradebook.db")
db.execute("update grade set manual_score = 0")
db.commit()
''',
}

HONEST = ["solution", "blank", "softmax-wrong-axis"]
# One cheat per threat class goes through the sandboxed nbgrader batch as well (the harmful ones only there).
THROUGH_NBGRADER = ["hook-custom-exc", "patch-checks", "frame-steal-reference", "lying-tensor", "read-solution",
                    "obfuscated-eval", "harm-delete-others", "harm-gradebook"]
NOT_IN_PROCESS = {"harm-delete-others", "harm-gradebook"}  # outside a sandbox, a missed screen would really harm
HOOK = "get_ipython().set_custom_exc((BaseException,), lambda *args, **kwargs: None)"


def _placed_elsewhere() -> dict:
    """Cheats outside the answer cells: a cell the student added, an edited experiment, a forged read-only cell."""
    import nbformat

    release = harness.release_notebook(ASSIGNMENT, NOTEBOOK)
    after = [i for i, c in enumerate(release.cells) if c.get("id") == "softmax"][0] + 1

    added = harness.fill(release, {})
    added.cells.insert(after, nbformat.v4.new_code_cell(HOOK))

    edited = harness.fill(release, {})
    experiment = next(c for c in edited.cells if "experiment" in c.metadata.get("tags", []))
    experiment.source = HOOK
    experiment.metadata["tags"] = []

    forged = harness.fill(release, {})
    fake = nbformat.v4.new_code_cell(HOOK)
    fake.metadata["nbgrader"] = {"grade": False, "solution": False, "locked": True, "grade_id": "doctor",
                                 "schema_version": 3}
    fake.metadata["editable"] = False
    forged.cells.insert(after, fake)
    return {"added-cell": added, "edited-experiment": edited, "forged-read-only-cell": forged}


def _digest(root: Path) -> dict[str, str]:
    """Every file of the course folder except what grading itself writes."""
    own = ("grading/autograded", "grading/feedback", "grading/logs", "grading/gradebook.db")
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not str(p.relative_to(root)).startswith(own) and "__pycache__" not in p.parts
    }


def _blank_with(cell: str, code: str):
    release = harness.release_notebook(ASSIGNMENT, NOTEBOOK)
    return harness.fill(release, {cell: code})


def _honest(course: Course) -> dict[str, float]:
    """Submit the honest students; return their expected totals."""
    points = harness.points(harness.read(harness.ROOT / "solutions" / ASSIGNMENT / NOTEBOOK))
    mistake = next(m for m in harness.load_mistakes(ASSIGNMENT) if m.name == "softmax-wrong-axis")
    course.submit("solution", ASSIGNMENT, {NOTEBOOK: harness.solved(ASSIGNMENT, NOTEBOOK)})
    course.submit("blank", ASSIGNMENT, {NOTEBOOK: harness.release_notebook(ASSIGNMENT, NOTEBOOK)})
    course.submit(mistake.name, ASSIGNMENT, {NOTEBOOK: harness.with_mistake(ASSIGNMENT, mistake)})
    return {
        "solution": sum(points.values()),
        "blank": 0.0,
        mistake.name: sum(p for gid, p in points.items() if gid not in mistake.fails),
    }


class Batch:
    def __init__(self, course: Course, expected: dict[str, float], jobs: int = 2, **options):
        self.course = course
        self.expected = expected
        self.before = _digest(course.root)
        self.results = {r.student: r for r in course.grade(ASSIGNMENT, jobs=jobs, **options)}
        self.after = _digest(course.root)
        self.scores = course.scores(ASSIGNMENT)
        self.flags = course.flags(ASSIGNMENT)
        self.inprocess: dict = {}

    def total(self, student: str) -> float:
        return sum(self.scores.get(student, {}).values())

    def verdict(self, student: str) -> tuple[float, list[str]]:
        """(total score, flag reasons): from nbgrader's gradebook where it graded the student, else in process."""
        if student in self.scores:
            return self.total(student), self.flags.get(student, [])
        result = self.inprocess[student]
        return sum(result.scores.values()), result.flags

    def explain(self) -> str:
        return "\n".join(self.course.log)[-8000:]


@pytest.fixture(scope="module")
def screened(tmp_path_factory) -> Batch:
    course = Course(tmp_path_factory.mktemp("screened") / "course", timeout=20)
    course.release(ASSIGNMENT)
    expected = _honest(course)
    cheats = {name: {NOTEBOOK: _blank_with("softmax", code)} for name, code in CHEATS.items()}
    for name in THROUGH_NBGRADER:
        course.submit(name, ASSIGNMENT, cheats[name])
    for name, nb in _placed_elsewhere().items():
        course.submit(name, ASSIGNMENT, {NOTEBOOK: nb})
    batch = Batch(course, expected)
    # Every cheat in process (after the submissions nbgrader graded too, so that a leak would show there).
    order = [n for n in CHEATS if n not in THROUGH_NBGRADER] + [n for n in THROUGH_NBGRADER if n not in NOT_IN_PROCESS]
    honest = {s: course.submitted_dir(s, ASSIGNMENT) / NOTEBOOK for s in HONEST}
    with inprocess.Runner(course.root, ASSIGNMENT) as runner:
        for name in order:
            batch.inprocess[name] = runner.grade(name, cheats[name])
        for student, path in honest.items():
            batch.inprocess[student] = runner.grade(student, {NOTEBOOK: harness.read(path)})
    return batch


@pytest.mark.parametrize("attempt", sorted(CHEATS) + ["added-cell", "edited-experiment", "forged-read-only-cell"])
def test_each_cheat_scores_zero_and_is_flagged(screened, attempt):
    total, flags = screened.verdict(attempt)
    assert total == 0, (attempt, screened.scores.get(attempt), screened.inprocess.get(attempt), screened.explain())
    assert flags, f"{attempt} was not flagged"
    if attempt == "forged-read-only-cell":  # nbgrader itself refuses the notebook (a duplicated read-only cell)
        assert any("could not grade" in reason for reason in flags), flags
    else:
        assert any("answers may not" in reason for reason in flags), flags


def test_in_process_verdicts_equal_nbgrader_verdicts(screened):
    """The cheap path is trusted for the other cheats only because it agrees with nbgrader on these."""
    shared = [s for s in screened.inprocess if s in screened.scores]
    assert len(shared) >= len(HONEST) + 5, shared
    differ = {}
    for student in shared:
        mine = screened.inprocess[student]
        if mine.scores != screened.scores[student] or bool(mine.flags) != (student in screened.flags):
            differ[student] = {"nbgrader": (screened.scores[student], screened.flags.get(student)),
                               "in process": (mine.scores, mine.flags, mine.errors)}
    assert not differ, differ


def test_honest_submissions_keep_their_scores_unflagged(screened):
    for student, total in screened.expected.items():
        assert screened.total(student) == total, (student, screened.scores.get(student), screened.explain())
        assert student not in screened.flags, (student, screened.flags[student])


def test_flag_is_in_the_feedback_export_and_formgrader_queue(screened):
    course = screened.course
    proc = course.nbgrader("export", "--to", "grades.csv", check=True)
    assert proc.returncode == 0
    rows = (course.root / "grades.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert header[-1] == "flags"
    flagged = {r.split(",")[header.index("student_id")]: r for r in rows[1:]}
    assert "answers may not" in flagged["hook-custom-exc"]
    assert flagged["solution"].endswith(",")  # no flag: the last column is empty
    # formgrader lists the flagged submission as needing manual grading
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url) as gb:
        assert gb.find_submission(ASSIGNMENT, "hook-custom-exc").needs_manual_grade
        assert not gb.find_submission(ASSIGNMENT, "solution").needs_manual_grade
    # the student's feedback names the reason
    course.nbgrader("generate_feedback", ASSIGNMENT, "--student=hook-custom-exc", "--force")
    html = (course.root / "grading" / "feedback" / "hook-custom-exc" / ASSIGNMENT / "welcome.html").read_text()
    assert "FLAGGED for review" in html and "get_ipython" in html


def test_grading_leaves_the_course_and_the_submissions_unchanged(screened):
    assert screened.before == screened.after


# --------------------------------------------------------------------------
# With the screen off, the sandbox alone must contain harm and the caps
# --------------------------------------------------------------------------


def _harm(root: Path, port: int) -> dict[str, str]:
    repo = harness.ROOT
    return {
        "delete-others": f'''
import glob
import shutil

for pattern in ["{root}/grading/submitted/*", "{root}/grading/autograded/*", "{root}/solutions", "{repo}/solutions"]:
    for path in glob.glob(pattern):
        shutil.rmtree(path, ignore_errors=True)
''',
        "rewrite-gradebook": f'''
import sqlite3

db = sqlite3.connect("{root}/grading/gradebook.db")
db.execute("update grade set auto_score = 0, manual_score = 0")
db.commit()
''',
        "steal-solution": f'''
import json

for path in ["{root}/solutions/00_welcome/welcome.ipynb", "{repo}/solutions/00_welcome/welcome.ipynb"]:
    try:
        nb = json.load(open(path))
    except OSError:
        continue
    for cell in nb["cells"]:
        if cell.get("id") in ("softmax", "cross_entropy"):
            exec("".join(cell["source"]))
''',
        "memory-bomb": '''
hoard = []
while True:
    hoard.append(bytearray(2**26))  # 64 MiB at a time, touched
''',
        "fork-bomb": '''
import os
import time

children = 0
while True:
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    children += 1
''',
        "network": f'''
import socket

socket.create_connection(("127.0.0.1", {port}), timeout=3).sendall(b"stolen")
''',
        "sleep-forever": '''
import signal
import time

signal.signal(signal.SIGINT, signal.SIG_IGN)
while True:
    time.sleep(1000)
''',
    }


@pytest.fixture(scope="module")
def sandboxed(tmp_path_factory) -> Batch:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    connections = []

    def accept():
        try:
            connections.append(listener.accept())
        except OSError:
            pass

    threading.Thread(target=accept, daemon=True).start()
    course = Course(
        tmp_path_factory.mktemp("sandboxed") / "course",
        timeout=15,
        config="c.ScreenCells.enabled = False\n"
        "c.SandboxedKernelManager.memory_limit = 3 * 2**30\n"
        "c.SandboxedKernelManager.max_processes = 200\n",
    )
    course.release(ASSIGNMENT)
    course.submit("solution", ASSIGNMENT, {NOTEBOOK: harness.solved(ASSIGNMENT, NOTEBOOK)})
    for name, code in _harm(course.root, port).items():
        course.submit(name, ASSIGNMENT, {NOTEBOOK: _blank_with("softmax", code)})
    # A kernel that really dies (the screen, which refuses `os._exit`, is off here) after its softmax answers.
    answers = harness.solution_answers(ASSIGNMENT, NOTEBOOK)
    crash = harness.fill(harness.release_notebook(ASSIGNMENT, NOTEBOOK),
                         {**answers, "cross_entropy": "import os\n\nos._exit(1)"})
    course.submit("kernel-crash", ASSIGNMENT, {NOTEBOOK: crash})
    batch = Batch(course, {"solution": POINTS}, notebook_timeout=120)
    listener.close()
    batch.connections = connections
    return batch


@pytest.mark.parametrize("attempt", ["delete-others", "rewrite-gradebook", "steal-solution", "memory-bomb",
                                     "fork-bomb", "network", "sleep-forever"])
def test_sandbox_contains_harm_and_caps(sandboxed, attempt):
    assert sandboxed.total(attempt) == 0, (sandboxed.scores.get(attempt), sandboxed.explain())


def test_caps_are_flagged(sandboxed):
    assert any("memory" in r for r in sandboxed.flags.get("memory-bomb", [])), sandboxed.flags
    assert any("process" in r for r in sandboxed.flags.get("fork-bomb", [])), sandboxed.flags
    assert sandboxed.flags.get("sleep-forever"), sandboxed.flags


def test_harm_reaches_nothing_outside_the_sandbox(sandboxed):
    assert sandboxed.total("solution") == POINTS, sandboxed.explain()
    assert "solution" not in sandboxed.flags
    assert sandboxed.before == sandboxed.after
    assert (harness.ROOT / "solutions" / ASSIGNMENT / NOTEBOOK).exists()
    assert not sandboxed.connections, "a sandboxed kernel reached the test's TCP port"
    from nbgrader.api import Gradebook

    with Gradebook(sandboxed.course.db_url) as gb:
        students = {s.id for s in gb.students}
        for student in students:
            for nb in gb.find_submission(ASSIGNMENT, student).notebooks:
                assert all(g.manual_score is None for g in nb.grades), f"{student}'s grades were rewritten"
    assert {"solution", "delete-others", "memory-bomb"} <= students


def test_kernel_crash_scores_zero_is_flagged_and_the_batch_goes_on(sandboxed):
    assert sandboxed.total("kernel-crash") == 0, sandboxed.scores.get("kernel-crash")
    assert "kernel died" in " ".join(sandboxed.flags["kernel-crash"]), sandboxed.flags.get("kernel-crash")
    assert "DeadKernelError" in "\n".join(sandboxed.course.log)
    # Every other submission of the batch was graded, the solution with full marks.
    assert set(sandboxed.results) - {"kernel-crash"} <= set(sandboxed.scores), sandboxed.explain()
    assert sandboxed.total("solution") == POINTS
