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
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

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


def catalogue_function(cause: str, catalogue: str = ""):
    """The mistaken function a ``*_MISTAKES`` catalogue keeps under the description ``cause`` names."""
    entry = catalogue_entry(cause)
    found = [
        (f"{module}.{name}", mapping[entry])
        for module, name, mapping in catalogues()
        if name.endswith("_MISTAKES") and entry in mapping
        and (not catalogue or catalogue in (name, f"{module}.{name}"))
    ]
    if len(found) != 1:
        names = [n for n, _ in found]
        raise ValueError(f"{cause!r}: {len(found)} catalogues hold it ({names}); name one in catalogue=")
    return found[0][1]


def _in_course_lib(value) -> bool:
    """A function or class defined in course_lib (a lambda or a closure made there included)."""
    import inspect

    return (inspect.isfunction(value) or inspect.isclass(value)) and value.__module__.startswith("course_lib.")


def _in_checks(value) -> bool:
    """A function or class defined in course_lib.checks (where the mistakes live), or a partial of one."""
    import functools

    if isinstance(value, functools.partial):
        return _in_checks(value.func)
    return _in_course_lib(value) and value.__module__.startswith("course_lib.checks")


def _is_private_definition(value) -> bool:
    """A private module-level function or class of course_lib (``_wgan_step``, ``_BlockPostLN``, ``_lr_factor``)."""
    return _in_course_lib(value) and value.__name__.startswith("_") and value.__qualname__ == value.__name__


def _is_literal(value) -> bool:
    import ast

    try:
        return ast.literal_eval(repr(value)) == value
    except (ValueError, SyntaxError):
        return False


def mistaken_definition(value, expected: str | None = None):
    """The function or class a catalogue value stands for, as a student would have written it.

    A catalogue value is the mistaken function itself, or an *adaptor* that the check also puts around
    the student's answer: ``functools.partial(apply_lora_summary, _apply_no_freeze)`` (a public summary
    with the mistake bound to it), or a closure such as ``_block_mistake(_BlockPostLN)`` (a closure over
    one private class or function). The adaptor is peeled off, repeatedly; a closure only while it does
    not have the ``expected`` shape (``"class"`` or a parameter list, see :func:`answer_definitions`), so
    the switchboard ``_dpo_variant(_right_margin, outside=True)``, whose own parameters are the answer's,
    is kept whole rather than taken for an adaptor of ``_right_margin``. What
    is left is for :func:`catalogue_source`: a function, a lambda, a class, a closure over the parts of a
    mistake, a partial of a private function with literal switches.
    """
    import functools
    import inspect

    if isinstance(value, functools.partial) and not _is_private_definition(value.func):
        inner = [v for v in (*value.args, *value.keywords.values()) if _in_checks(v)]
        if len(inner) == 1:
            return mistaken_definition(inner[0], expected)
    elif expected is not None and _shape(value) == _parameter_names(expected):
        return value
    elif inspect.isfunction(value) and inspect.unwrap(value).__closure__ and not _is_private_definition(value):
        inner = [c.cell_contents for c in inspect.unwrap(value).__closure__ if _in_checks(c.cell_contents)]
        if len(inner) == 1 and _is_private_definition(inner[0]):
            return mistaken_definition(inner[0], expected)
    return value


def _shape(value) -> str:
    """``"class"``, or a callable's parameter names as :func:`_parameter_names` writes them."""
    import inspect

    if inspect.isclass(value):
        return "class"
    try:
        parameters = inspect.signature(value).parameters.values()
    except (TypeError, ValueError):
        return ""
    stars = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    return ", ".join(stars.get(p.kind, "") + p.name for p in parameters)


def _lambda_as_def(fn, name: str):
    """``def name(args): return <body>`` for the lambda ``fn``, found in its module's source by line, args and
    the column where its body starts."""
    import ast
    import inspect

    code = fn.__code__
    tree = ast.parse(inspect.getsource(sys.modules[fn.__module__]))
    starts = {(line, col) for line, _, col, _ in code.co_positions() if line is not None}
    found = [
        node for node in ast.walk(tree)
        if isinstance(node, ast.Lambda) and node.lineno == code.co_firstlineno
        and tuple(a.arg for a in node.args.args) == code.co_varnames[: code.co_argcount]
        and any(line >= node.body.lineno and (line, col) >= (node.body.lineno, node.body.col_offset)
                and (line, col) <= (node.body.end_lineno, node.body.end_col_offset) for line, col in starts)
    ]
    if len(found) != 1:
        raise ValueError(f"cannot tell {len(found)} lambdas apart on line {fn.__code__.co_firstlineno} of "
                         f"{fn.__module__}: make this part of the mistake a named function")
    return ast.FunctionDef(name=name, args=found[0].args, body=[ast.Return(found[0].body)], decorator_list=[],
                           returns=None, type_params=[])


def catalogue_source(fn, function: str, defined: Iterable[str] = (), preamble: str = "",
                     expected: str | None = None) -> str:
    """Answer-cell source for a catalogue's mistaken function or class ``fn``, renamed to ``function``.

    ``fn`` is first unwrapped (:func:`mistaken_definition`). What it is made of becomes source:

    - a function or class of course_lib: its source; annotations dropped (the notebook has no
      ``from __future__ import annotations``); a lambda becomes a ``def`` returning its expression;
    - a closure: its inner function, with each value it closes over assigned at the top of its body
      (literals as they are; a lambda or closure of course_lib as a nested ``def`` of that name), so
      the switchboard ``_mistake(critic_sign=-1.0)`` becomes ``step`` with ``switches = {...}``;
    - a ``functools.partial`` of a private function with literal arguments: that function and a
      ``function`` that calls it with them.

    The private helpers of course_lib that any of it reads (``_q``, ``_timesteps``, a base class
    ``_BlockBase``) come first, each once. Every other global it reads must be a name the notebook
    ``defined`` (see :func:`answer_names`: its imports such as ``torch`` and ``F``, a student's own
    ``discriminator_loss`` called from the training step), never ``function`` itself: a ValueError names
    any other, so a catalogue entry that cannot stand in for a student's answer is refused, not
    half-copied. ``preamble`` (the answer cell's own imports) goes first. ``expected`` is what the solution
    defines under ``function`` (see :func:`answer_definitions`): a class, or a function with these
    parameters; a catalogue entry of another shape (a function where the answer is a class, other
    parameter names) is refused too.
    """
    import ast
    import dis
    import functools
    import inspect
    import textwrap
    import types

    allowed = set(defined)
    helpers: list = []  # private definitions, in the order they must be written

    def global_names(code: types.CodeType) -> set[str]:
        """The global names ``code`` loads (not attribute names such as ``full`` in ``torch.full``)."""
        names = {i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                names |= global_names(const)
        return names

    def need(names: set[str], scope: Mapping, who: str) -> None:
        """Visit the private helpers among ``names`` (read in ``scope``); refuse what the notebook lacks."""
        for name in sorted(names):
            if name not in scope or (name in allowed and name != function):  # a builtin, or the notebook's
                continue
            if _is_private_definition(scope[name]):
                visit(scope[name])
            else:
                raise ValueError(f"{who} reads {name!r}, which its answer cell may not use")

    def requirements(f) -> None:
        if inspect.isfunction(f):
            f = inspect.unwrap(f)  # a decorated function (@torch.no_grad()) reads what its body reads
            need(global_names(f.__code__), f.__globals__, f.__qualname__)
        else:
            members = [m.__func__ if isinstance(m, (staticmethod, classmethod)) else m for m in vars(f).values()]
            names = set().union(*(global_names(m.__code__) for m in members if inspect.isfunction(m)))
            bases = ast.parse(textwrap.dedent(inspect.getsource(f))).body[0].bases
            names |= {node.id for base in bases for node in ast.walk(base) if isinstance(node, ast.Name)}
            need(names, vars(sys.modules[f.__module__]), f.__name__)

    def visit(f) -> None:
        if f not in helpers:
            requirements(f)
            helpers.append(f)

    def definition(f, name: str) -> ast.stmt:
        """``f`` (a function, lambda, closure or class of course_lib) as one statement defining ``name``."""
        if f.__name__ == "<lambda>":
            node = _lambda_as_def(f, name)
        else:
            node = ast.parse(textwrap.dedent(inspect.getsource(f))).body[0]
            node.name = name
        requirements(f)
        if inspect.isfunction(f):
            f = inspect.unwrap(f)
            bound = []
            for var, cell in zip(f.__code__.co_freevars, f.__closure__ or ()):
                value = cell.cell_contents
                if _is_literal(value):
                    bound.append(ast.parse(f"{var} = {value!r}").body[0])
                elif _is_private_definition(value):
                    visit(value)
                    if var != value.__name__:
                        bound.append(ast.parse(f"{var} = {value.__name__}").body[0])
                elif _in_course_lib(value) and inspect.isfunction(value):
                    bound.append(definition(value, var))
                else:
                    raise ValueError(f"{f.__qualname__} closes over {var} = {value!r}, which is neither a literal "
                                     "nor a function of course_lib: write this mistake's code out")
            node.body[:0] = bound
        return node

    fn = mistaken_definition(fn, expected)
    if isinstance(fn, functools.partial):
        if not (_is_private_definition(fn.func) and all(map(_is_literal, (*fn.args, *fn.keywords.values())))):
            raise ValueError(f"{fn!r} binds more than literals to a private function: write this mistake's code out")
        visit(fn.func)
        wanted = None if expected is None else set(_parameter_names(expected).split(", "))
        params = list(inspect.signature(fn.func).parameters.values())[len(fn.args):]
        params = [p.replace(annotation=inspect.Parameter.empty) for p in params  # the other switches stay off
                  if p.name not in fn.keywords and (wanted is None or p.name in wanted)]
        passed = [*map(repr, fn.args), *(p.name if p.kind == p.POSITIONAL_ONLY else f"{p.name}={p.name}"
                                         for p in params), *(f"{k}={v!r}" for k, v in fn.keywords.items())]
        signature = str(inspect.Signature(params))
        main = ast.parse(f"def {function}{signature}:\n    return {fn.func.__name__}({', '.join(passed)})").body[0]
    elif _in_course_lib(fn):
        main = definition(fn, function)
    else:
        raise ValueError(f"{fn!r} is not a function or class of course_lib: write this mistake's code out")
    if expected is not None:
        shape = "class" if isinstance(main, ast.ClassDef) else _parameters(main)
        if _parameter_names(shape) != _parameter_names(expected):
            raise ValueError(f"the catalogue's {function} is {shape}, the answer's is {expected}: write this "
                             "mistake's code out, or give the catalogue entry the answer's shape")
    parts = [preamble.strip()] if preamble.strip() else []
    for node in [*(ast.parse(textwrap.dedent(inspect.getsource(h))).body[0] for h in helpers), main]:
        for sub in ast.walk(node):
            if isinstance(sub, ast.arg):
                sub.annotation = None
            elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
                sub.returns = None
        parts.append(ast.unparse(ast.fix_missing_locations(node)))
    return "\n" + "\n\n\n".join(parts) + "\n"


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
    """A solution cell as a student who got it right would leave it: markers removed."""
    lines = [line for line in source.splitlines() if line.strip() not in (SOLUTION_BEGIN, SOLUTION_END)]
    return "\n".join(lines)


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
        for line in cell.source.splitlines():
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


def catalogues() -> Iterator[tuple[str, str, Mapping]]:
    """``(module, NAME, mapping)`` for every ``*_MISTAKES``, ``*_SYMPTOMS`` and ``*_ERRORS`` mapping of
    course_lib.checks."""
    import importlib
    import pkgutil

    import course_lib.checks

    for info in pkgutil.iter_modules(course_lib.checks.__path__):
        module = importlib.import_module(f"course_lib.checks.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, Mapping) and name.endswith(("_MISTAKES", "_SYMPTOMS", "_ERRORS")):
                yield info.name, name, value


def catalogue_entries() -> dict[str, str]:
    """Every mistake catalogue entry of course_lib.checks: description -> ``module.CATALOGUE``.

    A ``*_MISTAKES`` mapping's keys are descriptions (its values are the mistaken functions), as are a
    ``*_SYMPTOMS`` mapping's (its values are predicates on what an answer did, which the check tests itself);
    an ``*_ERRORS`` mapping's values are (its keys are patterns searched in the exception an answer raised).
    """
    entries = {}
    for module, name, mapping in catalogues():
        descriptions = mapping.values() if name.endswith("_ERRORS") else mapping
        entries.update({description: f"{module}.{name}" for description in descriptions})
    return entries


def catalogue_entry(cause: str) -> str:
    """The catalogue description ``cause`` is, or else the one containing it (ValueError when none or several do)."""
    entries = catalogue_entries()
    if cause in entries:
        return cause
    found = [description for description in entries if cause in description]
    if len(found) != 1:
        raise ValueError(f"{cause!r} must occur in exactly one mistake catalogue entry, found {len(found)}: {found}")
    return found[0]


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
                    found[node.name] = _parameters(node)
    return found


def _parameters(node) -> str:
    """A def's parameters without annotations: ``(x, dim=-1)``."""
    import ast

    args = copy.deepcopy(node.args)
    for arg in ast.walk(args):
        if isinstance(arg, ast.arg):
            arg.annotation = None
    return f"({ast.unparse(args)})"


def _parameter_names(shape: str) -> str:
    """``"class"``, or a parameter list's names without defaults: ``(x, dim=-1)`` -> ``x, dim``."""
    if shape == "class":
        return shape
    import ast

    args = ast.parse(f"def f{shape}: pass").body[0].args
    names = [a.arg for a in (*args.posonlyargs, *args.args)]
    names += [f"*{args.vararg.arg}"] if args.vararg else []
    names += [a.arg for a in args.kwonlyargs] + ([f"**{args.kwarg.arg}"] if args.kwarg else [])
    return ", ".join(names)


def imported_names(source: str) -> set[str]:
    """The names that the import statements of ``source`` bind."""
    import ast

    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Import):
            names |= {a.asname or a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names |= {a.asname or a.name for a in node.names}
    return names


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
                if isinstance(node, ast.Import):
                    modules = [a for a in node.names if not a.name.startswith("course_lib")]
                    names |= {a.asname or a.name.split(".")[0] for a in modules}
                elif isinstance(node, ast.ImportFrom) and (id(cell) not in answers or
                                                          not (node.module or "").startswith("course_lib")):
                    names |= {a.asname or a.name for a in node.names}
                elif id(cell) in answers and isinstance(node, (ast.FunctionDef, ast.ClassDef)):
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
