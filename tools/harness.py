"""The grading round trip as a library: build submissions, grade them in a throw-away course.

Used by ``tests/test_roundtrip.py`` and ``tools/grade_demo.py``. A notebook's
mistake submissions are *data*: ``tests/submissions/<assignment>.py`` defines
``MISTAKES``, a list of :class:`Mistake` (which answer cell, the wrong code,
which test cells must lose their points). Everything else is generic.

A submission is built from the **student release** (``notebooks/``), exactly
as a student would hand it in: the answer cells are filled in (with the
solution, or a mistake), every other cell is left as released.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from catalogue import catalogue_function, catalogue_source, parameters_of

from course_lib.autograde.release import right_code, ship

ROOT = Path(__file__).resolve().parent.parent
SUBMISSIONS = ROOT / "tests" / "submissions"
SOLUTION_BEGIN = "### BEGIN SOLUTION"
SOLUTION_END = "### END SOLUTION"
HIDDEN_BEGIN = "### BEGIN HIDDEN TESTS"
HIDDEN_END = "### END HIDDEN TESTS"


@dataclass(frozen=True)
class Mistake:
    """A submission that is right except for one answer cell.

    ``code`` replaces the whole source of answer cell ``cell`` (its grade_id);
    every test cell in ``fails`` must score 0 and every other test cell full
    marks. ``notebook`` names the notebook file when an assignment has several.
    ``flagged`` marks a submission that tampers with the grader (e.g. rebinding
    ``torch.allclose``): the grader must not run that cell and must flag it.
    ``cause`` is a few words of the mistake catalogue entry (a ``*_MISTAKES``,
    ``*_SYMPTOMS`` or ``*_ERRORS`` description in ``course_lib.checks``) that a failing check
    must name as the likely cause, for mistakes the catalogue knows.

    ``code=FROM_CATALOGUE`` writes the mistake once, in its catalogue: the
    answer cell is generated from the catalogue's mistaken function (see
    :func:`catalogue_source`), renamed to ``function`` (default: the cell's id).
    ``catalogue`` names the ``*_MISTAKES`` mapping when one description is in several.
    """

    name: str
    cell: str
    code: str
    fails: frozenset[str]
    notebook: str | None = None
    why: str = ""
    flagged: bool = False
    cause: str = ""
    function: str = ""
    catalogue: str = ""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9-]+", self.name):
            raise ValueError(f"mistake names become student ids: use a-z, 0-9 and '-', got {self.name!r}")
        object.__setattr__(self, "fails", frozenset(self.fails))
        if self.code == FROM_CATALOGUE and not self.cause:
            raise ValueError(f"{self.name}: code=FROM_CATALOGUE needs the cause it is catalogued under")

    def generated(self, defined: Iterable[str] = (), imports: Mapping[str, str] = {},  # noqa: B006
                  definitions: Mapping[str, str] = {}) -> Mistake:  # noqa: B006
        """This mistake with ``code=FROM_CATALOGUE`` replaced by the source generated from its catalogue entry.

        ``imports`` maps an answer cell to the imports its solution makes (see :func:`answer_imports`);
        they open the generated cell, as they open the cell a student hands in. ``definitions`` (see
        :func:`answer_definitions`) is what the generated definition must look like.
        """
        if self.code != FROM_CATALOGUE:
            return self
        fn = catalogue_function(self.cause, self.catalogue)
        preamble = imports.get(self.cell, "")
        names = set(defined) | imported_names(preamble)
        function = self.function or self.cell
        code = catalogue_source(fn, function, names, preamble, definitions.get(function))
        return dataclasses.replace(self, code=code)


FROM_CATALOGUE: str = "<generated from the mistake catalogue>"


# --------------------------------------------------------------------------
# Reading notebooks
# --------------------------------------------------------------------------


def assignments(root: Path = ROOT) -> list[str]:
    return sorted(p.name for p in (root / "solutions").iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def notebook_names(assignment: str, root: Path = ROOT) -> list[str]:
    return sorted(p.name for p in (root / "solutions" / assignment).glob("*.ipynb"))


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def nbgrader_meta(cell: Mapping) -> dict:
    return dict(cell.get("metadata", {}).get("nbgrader", {}))


def answer_cells(nb: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    """Autograded answer cells (solution, not grade) by grade_id."""
    return {
        m["grade_id"]: cell
        for cell in nb.cells
        if (m := nbgrader_meta(cell)).get("solution") and not m.get("grade") and cell.cell_type == "code"
    }


def test_cells(nb: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    """Autograder test cells (grade, not solution) by grade_id."""
    return {
        m["grade_id"]: cell
        for cell in nb.cells
        if (m := nbgrader_meta(cell)).get("grade") and not m.get("solution") and cell.cell_type == "code"
    }


def points(nb: nbformat.NotebookNode) -> dict[str, float]:
    return {gid: float(nbgrader_meta(cell)["points"]) for gid, cell in test_cells(nb).items()}


def strip_markers(source: str) -> str:
    """A solution cell as a student who got it right would leave it: markers (and a debug exercise's
    shipped code, see :mod:`course_lib.autograde.release`) removed."""
    lines = [line for line in right_code(source).splitlines() if line.strip() not in (SOLUTION_BEGIN, SOLUTION_END)]
    return "\n".join(lines)


def shipped_cells(nb: nbformat.NotebookNode) -> dict[str, str]:
    """grade_id -> the code a debug exercise's answer cell ships with (its release text)."""
    shipped = {gid: ship(cell.source) for gid, cell in answer_cells(nb).items()}
    return {gid: code for gid, code in shipped.items() if code is not None}


def marked_regions(source: str, begin: str, end: str) -> list[str]:
    """The lines strictly between each ``begin`` / ``end`` marker pair."""
    found, inside = [], False
    for line in source.splitlines():
        if line.strip() == begin:
            inside = True
        elif line.strip() == end:
            inside = False
        elif inside:
            found.append(line)
    return found


def secret_lines(nb: nbformat.NotebookNode, min_length: int = 12, solutions: bool = True) -> list[str]:
    """Lines only a grader may see: inside hidden-test (and, if ``solutions``, solution) markers.

    Short lines, comments and lines whose text also appears outside the markers
    (a visible check repeated in a hidden one, or the opening ``check_x(`` of a
    hidden call whose visible twin is ``check_x(fn)``) are left out: finding
    those in a student copy proves nothing.
    """
    begins, ends = (HIDDEN_BEGIN,), (HIDDEN_END,)
    if solutions:
        begins, ends = (SOLUTION_BEGIN, HIDDEN_BEGIN), (SOLUTION_END, HIDDEN_END)
    secret, visible = [], set()
    for cell in nb.cells:
        inside = False
        visible.update(line.strip() for line in (ship(cell.source) or "").splitlines())
        for line in right_code(cell.source).splitlines():
            text = line.strip()
            if text in begins:
                inside = True
            elif text in ends:
                inside = False
            elif inside:
                secret.append(text)
            else:
                visible.add(text)
    shown = "\n".join(visible)
    return [t for t in dict.fromkeys(secret) if len(t) >= min_length and not t.startswith("#") and t not in shown]


# --------------------------------------------------------------------------
# Building submissions (as notebook JSON text, or raw bytes for broken ones)
# --------------------------------------------------------------------------


def fill(release: nbformat.NotebookNode, answers: Mapping[str, str]) -> nbformat.NotebookNode:
    """A copy of the release notebook with the named answer cells' sources replaced."""
    nb = copy.deepcopy(release)
    cells = answer_cells(nb)
    unknown = set(answers) - set(cells)
    if unknown:
        raise KeyError(f"no answer cell with grade_id {sorted(unknown)}; have {sorted(cells)}")
    for grade_id, source in answers.items():
        cells[grade_id].source = source
    return nb


def solution_answers(assignment: str, notebook: str, root: Path = ROOT) -> dict[str, str]:
    source = read(root / "solutions" / assignment / notebook)
    return {gid: strip_markers(cell.source) for gid, cell in answer_cells(source).items()}


def release_notebook(assignment: str, notebook: str, root: Path = ROOT) -> nbformat.NotebookNode:
    return read(root / "notebooks" / assignment / notebook)


def solved(assignment: str, notebook: str, root: Path = ROOT) -> nbformat.NotebookNode:
    return fill(release_notebook(assignment, notebook, root), solution_answers(assignment, notebook, root))


def shipped_answers(assignment: str, root: Path = ROOT) -> dict[str, str]:
    """grade_id -> shipped code, for every debug exercise of an assignment (all its notebooks)."""
    found = {}
    for name in notebook_names(assignment, root):
        found.update(shipped_cells(read(root / "solutions" / assignment / name)))
    return found


def as_shipped(assignment: str, cell: str, root: Path = ROOT) -> str:
    """The code debug exercise ``cell`` ships with: the mistake a student who changes nothing hands in."""
    shipped = shipped_answers(assignment, root)
    if cell not in shipped:
        raise KeyError(f"{cell} is not a debug exercise (no '### SHIPPED INSTEAD' marker); have {sorted(shipped)}")
    return shipped[cell]


def with_mistake(assignment: str, mistake: Mistake, root: Path = ROOT) -> nbformat.NotebookNode:
    notebook = mistake.notebook or _only_notebook(assignment, root)
    answers = solution_answers(assignment, notebook, root)
    answers[mistake.cell] = mistake.code
    return fill(release_notebook(assignment, notebook, root), answers)


def _only_notebook(assignment: str, root: Path = ROOT) -> str:
    names = notebook_names(assignment, root)
    if len(names) != 1:
        raise ValueError(f"{assignment} has {len(names)} notebooks; say which one in Mistake.notebook")
    return names[0]


def declared_mistakes(assignment: str) -> list[Mistake]:
    """``MISTAKES`` from ``tests/submissions/<assignment>.py`` as written there (an empty list if absent)."""
    path = SUBMISSIONS / f"{assignment}.py"
    if not path.exists():
        return []
    spec = importlib.util.spec_from_file_location(f"submissions_{assignment}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return list(module.MISTAKES)


def load_mistakes(assignment: str) -> list[Mistake]:
    """:func:`declared_mistakes`, each ``code=FROM_CATALOGUE`` replaced by the answer cell generated from it."""
    return [mistake.generated(**answer_context(assignment)) for mistake in declared_mistakes(assignment)]


def answer_context(assignment: str) -> dict:
    """What :meth:`Mistake.generated` needs to know of an assignment's answer cells."""
    return {"defined": answer_names(assignment), "imports": answer_imports(assignment),
            "definitions": answer_definitions(assignment)}


def answer_imports(assignment: str, root: Path = ROOT) -> dict[str, str]:
    """Answer cell grade_id -> the import statements its solution makes at top level (course_lib's included:
    the released cell keeps them, e.g. ``from course_lib.gpt import MLP, CausalSelfAttention``)."""
    import ast

    found = {}
    for name in notebook_names(assignment, root):
        for gid, cell in answer_cells(read(root / "solutions" / assignment / name)).items():
            tree = ast.parse(strip_markers(cell.source))
            lines = [ast.unparse(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
            if lines:
                found[gid] = "\n".join(lines)
    return found


def answer_definitions(assignment: str, root: Path = ROOT) -> dict[str, str]:
    """What the answer cells' solutions define at top level: name -> ``"class"`` or the function's parameters,
    e.g. ``"(model, idx, past=None)"`` (defaults as written)."""
    import ast

    found = {}
    for name in notebook_names(assignment, root):
        for cell in answer_cells(read(root / "solutions" / assignment / name)).values():
            for node in ast.parse(strip_markers(cell.source)).body:
                if isinstance(node, ast.ClassDef):
                    found[node.name] = "class"
                elif isinstance(node, ast.FunctionDef):
                    found[node.name] = parameters_of(node)
    return found


def _imported(node) -> dict[str, str]:
    """name -> module for each name an import statement binds (``{}`` for any other statement)."""
    import ast

    if isinstance(node, ast.Import):
        return {a.asname or a.name.split(".")[0]: a.name for a in node.names}
    if isinstance(node, ast.ImportFrom):
        return {a.asname or a.name: node.module or "" for a in node.names}
    return {}


def imported_names(source: str) -> set[str]:
    """The names that the import statements of ``source`` bind."""
    import ast

    return {name for node in ast.parse(source).body for name in _imported(node)}


def answer_names(assignment: str, root: Path = ROOT) -> set[str]:
    """Names an answer cell of an assignment may use: what its solutions notebooks import (in the cells
    students cannot edit, course_lib's helpers such as ``format_prompt`` included; an answer cell's own
    course_lib imports are its :func:`answer_imports`) and the functions and classes their answer cells
    define."""
    import ast

    names = set()
    for name in notebook_names(assignment, root):
        nb = read(root / "solutions" / assignment / name)
        answers = {id(cell) for cell in answer_cells(nb).values()}
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            try:
                tree = ast.parse(strip_markers(cell.source))
            except SyntaxError:  # IPython magics
                continue
            for node in tree.body:
                bound = _imported(node)
                if id(cell) not in answers:
                    names |= set(bound)
                    continue
                names |= {name for name, module in bound.items() if not module.startswith("course_lib")}
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                    names.add(node.name)
    return names


# --------------------------------------------------------------------------
# A throw-away nbgrader course
# --------------------------------------------------------------------------


@dataclass
class Course:
    """A copy of the course's nbgrader setup in ``root``, for grading without touching the repo.

    ``timeout`` overrides the per-cell execution limit (seconds); ``config`` is
    appended to the copied nbgrader_config.py (e.g. sandbox caps for a test).
    """

    root: Path
    timeout: int | None = None
    source: Path = ROOT
    log: list[str] = field(default_factory=list)
    config: str = ""

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        config = (self.source / "nbgrader_config.py").read_text(encoding="utf-8")
        if self.timeout is not None:
            config += f"\nc.Execute.timeout = {int(self.timeout)}\n"
        config += "\n" + self.config + "\n"
        (self.root / "nbgrader_config.py").write_text(config, encoding="utf-8")
        shutil.copytree(self.source / "solutions", self.root / "solutions", dirs_exist_ok=True)

    # -- running nbgrader ---------------------------------------------------

    def nbgrader(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = dict(os.environ)
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        cmd = [sys.executable, "-m", "nbgrader", *args]
        proc = subprocess.run(cmd, cwd=self.root, env=env, capture_output=True, text=True)
        self.log.append(f"$ nbgrader {' '.join(args)}  (exit {proc.returncode})\n{proc.stdout}{proc.stderr}")
        if check and proc.returncode != 0:
            raise RuntimeError(f"nbgrader {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        return proc

    def release(self, assignment: str) -> None:
        """generate_assignment into this course (registers it in this course's gradebook)."""
        self.nbgrader("generate_assignment", assignment, "--force")

    def submitted_dir(self, student: str, assignment: str) -> Path:
        return self.root / "grading" / "submitted" / student / assignment

    def submit(self, student: str, assignment: str, notebooks: Mapping[str, nbformat.NotebookNode | bytes]) -> None:
        folder = self.submitted_dir(student, assignment)
        folder.mkdir(parents=True, exist_ok=True)
        for name, nb in notebooks.items():
            data = nb if isinstance(nb, bytes) else nbformat.writes(nb).encode("utf-8")
            (folder / name).write_bytes(data)

    def autograde(self, assignment: str, students: Iterable[str] | None = None, force: bool = False):
        args = ["autograde", assignment]
        if force:
            args.append("--force")
        for student in students or []:
            args.append(f"--student={student}")
        return self.nbgrader(*args, check=False)

    def grade(self, assignment: str, **options) -> list:
        """Grade a class with ``course_lib.autograde`` (parallel, sandboxed workers); its progress goes to the log."""
        from course_lib.autograde.batch import grade_class

        lines: list[str] = []
        echo = options.pop("progress", None)

        def progress(line: str) -> None:
            lines.append(line)
            if echo:
                echo(line)

        try:
            return grade_class(self.root, assignment, progress=progress, **options)
        finally:
            logs = sorted((self.root / "grading" / "logs").glob(f"{assignment}-worker*.log"))
            workers = "".join(f"\n--- {p.name}\n" + p.read_text(errors="replace") for p in logs)
            self.log.append("\n".join(lines) + workers)

    @property
    def db_url(self) -> str:
        return "sqlite:///" + str(self.root / "grading" / "gradebook.db")

    def flags(self, assignment: str | None = None, db_url: str | None = None) -> dict[str, list[str]]:
        """student -> the flag comments of their submission (only flagged students)."""
        from course_lib.autograde.flags import flags

        return {student: reasons for (_, student), reasons in flags(db_url or self.db_url, assignment).items()}

    # -- reading results ----------------------------------------------------

    def scores(self, assignment: str, db_url: str | None = None) -> dict[str, dict[str, float]]:
        """student -> {test cell grade_id -> score}; a student with no graded submission is absent."""
        from nbgrader.api import Gradebook, MissingEntry

        result: dict[str, dict[str, float]] = {}
        with Gradebook(db_url or self.db_url) as gb:
            for student in gb.students:
                try:
                    submission = gb.find_submission(assignment, student.id)
                except MissingEntry:
                    continue
                cells = {}
                for notebook in submission.notebooks:
                    for grade in notebook.grades:
                        if grade.cell_type == "code":
                            cells[grade.name] = float(grade.score)
                if cells:
                    result[student.id] = cells
        return result

    def autograded_notebook(self, student: str, assignment: str, notebook: str) -> nbformat.NotebookNode:
        return read(self.root / "grading" / "autograded" / student / assignment / notebook)
