"""Mistake catalogues, and the answer cells written from them (issue 15: each mistake is written once).

``course_lib.checks`` keeps, per notebook, catalogues of the common mistakes: ``*_MISTAKES`` (description ->
the mistaken answer, or the adaptor a check puts around an answer), ``*_SYMPTOMS`` (description -> a
predicate) and ``*_ERRORS`` (exception pattern -> description). The grading round trip's mistake
submissions (``tests/submissions``, read by ``harness.py``) name their cause in those words, and a
``*_MISTAKES`` entry also gives the submission its code: :func:`catalogue_source` writes the answer cell
a student who made that mistake would hand in.
"""

from __future__ import annotations

import ast
import copy
import dis
import functools
import importlib
import inspect
import pkgutil
import sys
import textwrap
import types
from collections.abc import Iterable, Iterator, Mapping


def catalogues() -> Iterator[tuple[str, str, Mapping]]:
    """``(module, NAME, mapping)`` for every ``*_MISTAKES``, ``*_SYMPTOMS`` and ``*_ERRORS`` mapping of
    course_lib.checks."""
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

    return (inspect.isfunction(value) or inspect.isclass(value)) and value.__module__.startswith("course_lib.")


def _in_checks(value) -> bool:
    """A function or class defined in course_lib.checks (where the mistakes live), or a partial of one."""

    if isinstance(value, functools.partial):
        return _in_checks(value.func)
    return _in_course_lib(value) and value.__module__.startswith("course_lib.checks")


def _is_private_definition(value) -> bool:
    """A private module-level function or class of course_lib (``_wgan_step``, ``_BlockPostLN``, ``_lr_factor``)."""
    return _in_course_lib(value) and value.__name__.startswith("_") and value.__qualname__ == value.__name__


def _is_literal(value) -> bool:

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
    not have the ``expected`` shape (``"class"`` or a parameter list, see ``harness.answer_definitions``), so
    the switchboard ``_dpo_variant(_right_margin, outside=True)``, whose own parameters are the answer's,
    is kept whole rather than taken for an adaptor of ``_right_margin``. What
    is left is for :func:`catalogue_source`: a function, a lambda, a class, a closure over the parts of a
    mistake, a partial of a private function with literal switches.
    """

    if isinstance(value, functools.partial) and not _is_private_definition(value.func):
        inner = [v for v in (*value.args, *value.keywords.values()) if _in_checks(v)]
        if len(inner) == 1:
            return mistaken_definition(inner[0], expected)
    elif expected is not None and _shape(value) == parameter_names(expected):
        return value
    elif inspect.isfunction(value) and inspect.unwrap(value).__closure__ and not _is_private_definition(value):
        inner = [c.cell_contents for c in inspect.unwrap(value).__closure__ if _in_checks(c.cell_contents)]
        if len(inner) == 1 and _is_private_definition(inner[0]):
            return mistaken_definition(inner[0], expected)
    return value


def _shape(value) -> str:
    """``"class"``, or a callable's parameter names as :func:`parameter_names` writes them."""

    if inspect.isclass(value):
        return "class"
    try:
        parameters = inspect.signature(value).parameters.values()
    except (TypeError, ValueError):
        return ""
    stars = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    return ", ".join(stars.get(p.kind, "") + p.name for p in parameters)


def _source_node(f) -> ast.stmt:
    """The ``def`` or ``class`` statement of ``f``, parsed from its source (dedented if it is nested)."""
    return ast.parse(textwrap.dedent(inspect.getsource(f))).body[0]


def _lambda_as_def(fn, name: str):
    """``def name(args): return <body>`` for the lambda ``fn``, found in its module's source by line, args and
    the column where its body starts."""

    code = fn.__code__
    tree = ast.parse(inspect.getsource(sys.modules[fn.__module__]))
    starts = {(line, col) for line, _, col, _ in code.co_positions() if line is not None}
    found = [
        node for node in ast.walk(tree)
        if isinstance(node, ast.Lambda) and node.lineno == code.co_firstlineno
        and tuple(a.arg for a in node.args.args) == code.co_varnames[: code.co_argcount]
        and any((node.body.lineno, node.body.col_offset) <= start <= (node.body.end_lineno, node.body.end_col_offset)
                for start in starts)
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
    ``defined`` (see ``harness.answer_names``: its imports such as ``torch`` and ``F``, a student's own
    ``discriminator_loss`` called from the training step), never ``function`` itself: a ValueError names
    any other, so a catalogue entry that cannot stand in for a student's answer is refused, not
    half-copied. ``preamble`` (the answer cell's own imports) goes first. ``expected`` is what the solution
    defines under ``function`` (see ``harness.answer_definitions``): a class, or a function with these
    parameters; a catalogue entry of another shape (a function where the answer is a class, other
    parameter names) is refused too.
    """

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
            bases = _source_node(f).bases
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
            node = _source_node(f)
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
        wanted = None if expected is None else set(parameter_names(expected).split(", "))
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
        shape = "class" if isinstance(main, ast.ClassDef) else parameters_of(main)
        if parameter_names(shape) != parameter_names(expected):
            raise ValueError(f"the catalogue's {function} is {shape}, the answer's is {expected}: write this "
                             "mistake's code out, or give the catalogue entry the answer's shape")
    parts = [preamble.strip()] if preamble.strip() else []
    for node in [*map(_source_node, helpers), main]:
        parts.append(ast.unparse(ast.fix_missing_locations(_without_annotations(node))))
    return "\n" + "\n\n\n".join(parts) + "\n"


def _without_annotations(node: ast.AST) -> ast.AST:
    """``node`` with its parameter and return annotations dropped, in place (notebooks have no
    ``from __future__ import annotations``, and a student's code has none)."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.arg):
            sub.annotation = None
        elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
            sub.returns = None
    return node


def parameters_of(node) -> str:
    """A def's parameters without annotations: ``(x, dim=-1)``."""
    return f"({ast.unparse(_without_annotations(copy.deepcopy(node.args)))})"


def parameter_names(shape: str) -> str:
    """``"class"``, or a parameter list's names without defaults: ``(x, dim=-1)`` -> ``x, dim``."""
    if shape == "class":
        return shape
    args = ast.parse(f"def f{shape}: pass").body[0].args
    names = [a.arg for a in (*args.posonlyargs, *args.args)]
    names += [f"*{args.vararg.arg}"] if args.vararg else []
    names += [a.arg for a in args.kwonlyargs] + ([f"**{args.kwarg.arg}"] if args.kwarg else [])
    return ", ".join(names)
