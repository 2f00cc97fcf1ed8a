"""What the notebooks' self-check cells call.

Each helper raises :class:`CheckFailed` (an ``AssertionError``, so nbgrader
scores the cell 0) with a message that says *what* differs, on *which input*,
and, where a known mistake reproduces the wrong answer, its *likely cause*.

The helpers keep private references to the comparison functions they use
(``torch.allclose`` and friends), captured when this module is imported in a
notebook's setup cell. A student who rebinds ``torch.allclose`` or
``np.allclose`` in an answer cell therefore gains nothing, and the checks say
so. :func:`check_untampered` also notices IPython and ``sys`` hooks an answer
cell installed, and library functions it replaced with its own.

None of that can stop deliberate tampering inside the kernel; the grader
screens every submitted cell *before* it runs (:mod:`course_lib.answer_rules`).
:func:`check_answer_rules` runs the same screen on the cell that defined the
function or class a check receives, so a student sees the verdict first.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import linecache
import math
import os
import re
import sys
import traceback
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any

import numpy as np
import torch

# Private references, captured before any answer cell runs.
_ORIGINALS: dict[str, tuple[Any, str, Any]] = {
    "torch.allclose": (torch, "allclose", torch.allclose),
    "torch.isclose": (torch, "isclose", torch.isclose),
    "torch.equal": (torch, "equal", torch.equal),
    "torch.isfinite": (torch, "isfinite", torch.isfinite),
    "numpy.allclose": (np, "allclose", np.allclose),
    "numpy.isclose": (np, "isclose", np.isclose),
    "numpy.testing.assert_allclose": (np.testing, "assert_allclose", np.testing.assert_allclose),
}
_isfinite = torch.isfinite
_isnan = torch.isnan
_as_tensor = torch.as_tensor
_Tensor = torch.Tensor
_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)  # exactly these: a subclass can lie about comparisons


class CheckFailed(AssertionError):
    """A self-check found a difference; the message says what and why."""

    def _render_traceback_(self) -> list[str]:
        """What IPython (Jupyter, nbgrader's feedback) shows for a failed check: the message, after the lines
        of the student's own code when it raised. The check's own frames inside ``course_lib`` are left out:
        they are the grader's code, not the student's, and pushed the message off the screen."""
        lines = []
        cause = self.__cause__
        if cause is not None:
            frames = [frame for frame in traceback.extract_tb(cause.__traceback__)
                      if not os.path.abspath(frame.filename).startswith(_COURSE_LIB + os.sep)]
            if frames:
                lines.append("Your code raised (most recent call last):")
                lines += [entry.rstrip("\n") for entry in traceback.format_list(frames)]
                lines += [entry.rstrip("\n") for entry in traceback.format_exception_only(type(cause), cause)]
                lines.append("")
        lines.append(f"{type(self).__name__}: {self}")
        return lines


def passed(message: str = "All tests passed.") -> None:
    """Print the line a student hopes to see."""
    print(f"\N{WHITE HEAVY CHECK MARK} {message}")


def check_untampered() -> None:
    """Fail if an answer cell replaced a comparison function the checks rely on, or hooked IPython or sys."""
    for qualname, (owner, attr, original) in _ORIGINALS.items():
        if getattr(owner, attr, None) is not original:
            raise CheckFailed(
                f"`{qualname}` has been replaced in this notebook. The checks do not use it, "
                "so this cannot make a test pass; restore it (restart the kernel) and fix the "
                "function instead."
            )
    changed = _changed_hooks() or _patched_library()
    if changed:
        raise CheckFailed(
            f"An answer cell changed {changed}. Answers may not hook into IPython or change the libraries the "
            "checks use: the grader will not run such a cell and will flag the submission for your instructor. "
            "Remove that code and restart the kernel."
        )


# --------------------------------------------------------------------------
# Hooks and patches from notebook cells (defence in depth behind course_lib.answer_rules)
# --------------------------------------------------------------------------
# This module is first imported by a notebook's first self-check, i.e. *after* the first answer cell ran, so a
# snapshot taken then could already hold that cell's hooks. Instead, what gives an answer away is where its
# code comes from: a function compiled from a notebook cell (its source registered in linecache with no
# modification time, as IPython does, or ``__module__ == "__main__"``). Library hooks (the inline plot
# backend's post_execute callback, IPython's own transformers and magics) come from files.

# Shell methods an answer could replace to hide errors or rewrite cells.
_SHELL_METHODS = (
    "showtraceback", "_showtraceback", "showsyntaxerror", "showindentationerror", "run_cell", "run_cell_async",
    "run_ast_nodes", "run_code", "transform_cell", "transform_ast", "excepthook", "get_exception_only",
)
# Where a patched function would be found: these modules (and every course_lib module) and their classes.
_PATCHABLE_MODULES = ("builtins", "torch", "torch.nn", "torch.nn.functional", "torch.linalg", "numpy", "math")
# Library objects already seen not to come from a cell, by id (held, so that no later object reuses an id).
_LIBRARY_CODE: dict[int, Any] = {}
_MODULES_AT_IMPORT = {name: sys.modules[name] for name in ("torch", "numpy", "course_lib") if name in sys.modules}


def _shell() -> Any:
    ipython = sys.modules.get("IPython")
    try:
        return ipython.get_ipython() if ipython is not None else None
    except Exception:
        return None


# Types whose values are never a notebook cell's code (most of what torch and numpy hold): skipped fast.
_NEVER_FROM_A_CELL = {
    types.BuiltinFunctionType, types.MethodDescriptorType, types.WrapperDescriptorType, types.ModuleType,
    types.GetSetDescriptorType, types.MemberDescriptorType, types.ClassMethodDescriptorType, type(None), bool, int,
    float, str, bytes, tuple, list, dict, set, frozenset, torch.dtype, np.ufunc,
}


def _from_a_cell(obj: Any) -> bool:
    """Whether ``obj`` (a function, method, partial, class or callable object) was defined in a notebook cell."""
    if type(obj) in _NEVER_FROM_A_CELL:
        return False
    for _ in range(4):  # unwrap bound methods and partials
        if isinstance(obj, functools.partial):
            obj = obj.func
        elif isinstance(obj, types.MethodType):
            obj = obj.__func__
        else:
            break
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    if isinstance(obj, property):
        return any(_from_a_cell(f) for f in (obj.fget, obj.fset, obj.fdel) if f is not None)
    if isinstance(obj, types.FunctionType):
        entry = linecache.cache.get(obj.__code__.co_filename)
        return obj.__module__ == "__main__" or bool(entry and len(entry) > 1 and entry[1] is None)
    if isinstance(obj, type):
        return obj.__module__ == "__main__"
    if obj is None or isinstance(obj, (types.BuiltinFunctionType, types.ModuleType)):
        return False
    return type(obj).__module__ == "__main__"  # an instance of a class from a cell


def _hook_lists(shell: Any) -> dict[str, list[Any]]:
    """Every list of hooks of the shell, by the name a message gives it."""
    manager = getattr(shell, "input_transformer_manager", None)
    lists = {
        "IPython's input transformers (input_transformers_cleanup)": getattr(manager, "cleanup_transforms", []),
        "IPython's line transformers": getattr(manager, "line_transforms", []),
        "IPython's token transformers": getattr(manager, "token_transformers", []),
        "IPython's input_transformers_post": getattr(shell, "input_transformers_post", []),
        "IPython's ast_transformers": getattr(shell, "ast_transformers", []),
    }
    events = getattr(getattr(shell, "events", None), "callbacks", {}) or {}
    for event, callbacks in events.items():
        lists[f"IPython's {event!r} event callbacks"] = callbacks
    magics = getattr(getattr(shell, "magics_manager", None), "magics", {}) or {}
    for kind, table in magics.items():
        lists[f"IPython's {kind} magics"] = list(table.values())
    return lists


def _changed_hooks() -> str | None:
    """The IPython or sys hook a notebook cell installed, as words for a message; None when there is none."""
    for name in ("excepthook", "displayhook"):
        if _from_a_cell(getattr(sys, name, None)):
            return f"`sys.{name}`"
    shell = _shell()
    if shell is None:
        return None
    if getattr(shell, "custom_exceptions", ()):
        return "IPython's custom exception handler (set_custom_exc)"
    for name in _SHELL_METHODS:
        if _from_a_cell(vars(shell).get(name)) or _from_a_cell(getattr(type(shell), name, None)):
            return f"IPython's `{name}`"
    for name, hooks in _hook_lists(shell).items():
        if any(_from_a_cell(hook) for hook in list(hooks)):
            return name
    return None


def _patched_library() -> str | None:
    """A function or class of torch, numpy, builtins or course_lib that a notebook cell put there; or None."""
    for name, module in _MODULES_AT_IMPORT.items():
        if sys.modules.get(name) is not module:
            return f"`sys.modules[{name!r}]`"
    names = [*_PATCHABLE_MODULES, *(n for n in list(sys.modules) if n == "course_lib" or n.startswith("course_lib."))]
    classes: list[type] = [torch.Tensor]
    for name in names:
        module = sys.modules.get(name)
        if module is None:
            continue
        for attr, value in list(vars(module).items()):
            if type(value) in _NEVER_FROM_A_CELL:
                continue
            if id(value) not in _LIBRARY_CODE:
                if _from_a_cell(value):
                    return f"`{name}.{attr}`"
                _LIBRARY_CODE[id(value)] = value
            if isinstance(value, type) and (name == "torch.nn" or getattr(value, "__module__", "") == name):
                classes.append(value)
    for cls in dict.fromkeys(classes):
        for attr, value in list(vars(cls).items()):
            if type(value) in _NEVER_FROM_A_CELL or id(value) in _LIBRARY_CODE:
                continue
            if _from_a_cell(value):
                return f"`{cls.__module__}.{cls.__qualname__}.{attr}`"
            _LIBRARY_CODE[id(value)] = value
    return None


# --------------------------------------------------------------------------
# Describing values in messages
# --------------------------------------------------------------------------


def describe(value: Any) -> str:
    """A short, human description of an input or output (type, dtype, shape)."""
    if isinstance(value, _Tensor):
        shape = tuple(value.shape)
        text = f"tensor {str(value.dtype).replace('torch.', '')} {shape}"
        if value.numel() and value.is_floating_point():
            text += f", values in [{value.min().item():.3g}, {value.max().item():.3g}]"
        return text
    if isinstance(value, np.ndarray):
        return f"numpy array {value.dtype} {value.shape}"
    if isinstance(value, (list, tuple)) and len(value) > 4:
        return f"{type(value).__name__} of length {len(value)}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe_case(case: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={describe(v)}" for k, v in case.items())


def _index_text(index: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(i)) for i in index) + "]"


# --------------------------------------------------------------------------
# Single-value checks
# --------------------------------------------------------------------------


def _require_tensor(actual: Any, name: str) -> torch.Tensor:
    if actual is None:
        raise CheckFailed(f"{name} is None: did the function forget to `return` its result?")
    if isinstance(actual, np.ndarray):
        raise CheckFailed(f"{name} is a NumPy array; return a torch.Tensor (stay in PyTorch).")
    if not isinstance(actual, _Tensor):
        raise CheckFailed(f"{name} should be a torch.Tensor, got {type(actual).__name__}.")
    if type(actual) not in _TENSOR_TYPES:
        raise CheckFailed(
            f"{name} is a {type(actual).__name__}, a subclass of torch.Tensor; return a plain torch.Tensor."
        )
    return actual


def check_shape(
    actual: Any, expected_shape: Sequence[int] | torch.Size, name: str = "output", hint: str = ""
) -> None:
    """Fail unless ``actual`` is a tensor of exactly ``expected_shape``."""
    tensor = _require_tensor(actual, name)
    expected = tuple(expected_shape)
    if tuple(tensor.shape) != expected:
        message = f"{name} has shape {tuple(tensor.shape)}; expected {expected}."
        if tensor.numel() == math.prod(expected):
            message += " Same number of entries: a reshape/transpose or a reduction over the wrong axis?"
        raise CheckFailed(message + (f"\n  Hint: {hint}" if hint else ""))


def _difference(actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float) -> str | None:
    """None when close; otherwise a sentence locating the worst difference."""
    a = actual.detach().to("cpu", torch.float64)
    e = expected.detach().to("cpu", torch.float64)
    a_finite, e_finite = _isfinite(a), _isfinite(e)
    bad_finite = e_finite & ~a_finite
    if bad_finite.any():
        index = bad_finite.nonzero()[0].tolist()
        kind = "NaN" if _isnan(a[tuple(index)]) else "inf"
        count = int(bad_finite.sum())
        return (
            f"{count} entr{'y is' if count == 1 else 'ies are'} {kind} where a finite value is "
            f"expected, e.g. at {_index_text(index)} (expected {e[tuple(index)].item():.6g})."
        )
    # Non-finite entries must match exactly (e.g. -inf where a mask removes everything).
    a_odd, e_odd = a[~e_finite], e[~e_finite]
    same_odd = torch.equal(_isnan(a_odd), _isnan(e_odd)) and torch.equal(
        a_odd.nan_to_num(0.0, 1.0, -1.0), e_odd.nan_to_num(0.0, 1.0, -1.0)
    )
    if not torch.equal(a_finite, e_finite) or not same_odd:
        index = (a_finite != e_finite).nonzero()
        where = _index_text(index[0].tolist()) if len(index) else "some entries"
        return f"non-finite entries differ, e.g. at {where}."
    gap = (a - e).abs().where(e_finite, torch.zeros_like(a))
    tolerance = atol + rtol * e.abs().where(e_finite, torch.zeros_like(e))
    bad = gap > tolerance
    if not bad.any():
        return None
    flat = int((gap - tolerance).argmax())
    index = np.unravel_index(flat, tuple(a.shape)) if a.dim() else ()
    at = _index_text(index) if a.dim() else ""
    value, want = a[tuple(index)].item(), e[tuple(index)].item()
    return (
        f"{int(bad.sum())} of {a.numel()} entries differ; the worst is at {at or 'the value'}: "
        f"got {value:.6g}, expected {want:.6g} (|difference| {abs(value - want):.3g}, "
        f"tolerance {atol:g} + {rtol:g}*|expected|)."
    )


def check_close(
    actual: Any,
    expected: Any,
    name: str = "output",
    atol: float = 1e-5,
    rtol: float = 1e-4,
    hint: str = "",
) -> None:
    """Fail unless ``actual`` matches ``expected`` in type, shape and value (to tolerance).

    Tensors, NumPy arrays, Python numbers and (nested) tuples/lists of them are
    compared; NaN or inf where a finite value is expected is always reported.
    """
    check_untampered()
    reason = _mismatch(actual, expected, name, atol, rtol)
    if reason:
        raise CheckFailed(reason + (f"\n  Hint: {hint}" if hint else ""))


def _mismatch(actual: Any, expected: Any, name: str, atol: float, rtol: float) -> str | None:
    if isinstance(expected, (tuple, list)):
        if not isinstance(actual, (tuple, list)):
            return f"{name} should be a {type(expected).__name__} of {len(expected)} values, got {describe(actual)}."
        if len(actual) != len(expected):
            values = "value" if len(expected) == 1 else "values"
            return f"{name} should have {len(expected)} {values}, got {len(actual)}."
        for i, (a, e) in enumerate(zip(actual, expected)):
            reason = _mismatch(a, e, f"{name}[{i}]", atol, rtol)
            if reason:
                return reason
        return None
    if isinstance(expected, (_Tensor, np.ndarray)):
        if isinstance(expected, np.ndarray):
            expected = _as_tensor(expected)
            if isinstance(actual, np.ndarray):
                actual = _as_tensor(actual)
        try:
            tensor = _require_tensor(actual, name)
        except CheckFailed as exc:
            return str(exc)
        if tuple(tensor.shape) != tuple(expected.shape):
            return f"{name} has shape {tuple(tensor.shape)}; expected {tuple(expected.shape)}."
        if expected.dtype == torch.bool or not expected.is_floating_point():
            if not torch.equal(tensor.detach().cpu().to(expected.dtype), expected.cpu()):
                diff = (tensor.detach().cpu().to(expected.dtype) != expected.cpu()).nonzero()
                return (
                    f"{name} differs at {len(diff)} entr{'y' if len(diff) == 1 else 'ies'}, "
                    f"first at {_index_text(diff[0].tolist())}."
                )
            return None
        if not tensor.is_floating_point():
            return f"{name} has dtype {tensor.dtype}; expected a floating-point tensor."
        reason = _difference(tensor, expected, atol, rtol)
        return f"{name}: {reason}" if reason else None
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        if type(actual) in _TENSOR_TYPES and actual.numel() == 1:
            actual = actual.item()
        if not isinstance(actual, (int, float)) or isinstance(actual, bool):
            return f"{name} should be a number, got {describe(actual)}."
        if math.isnan(actual) and not math.isnan(expected):
            return f"{name} is NaN; expected {expected:.6g}."
        if not abs(actual - expected) <= atol + rtol * abs(expected):
            return f"{name} is {actual:.6g}; expected {expected:.6g}."
        return None
    if actual != expected:
        return f"{name} is {describe(actual)}; expected {describe(expected)}."
    return None


# --------------------------------------------------------------------------
# Whole-function checks
# --------------------------------------------------------------------------


def _clone(value: Any) -> Any:
    if isinstance(value, _Tensor):
        return value.detach().clone()
    if isinstance(value, (tuple, list)):
        return type(value)(_clone(v) for v in value)
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    return value


def _call(fn: Callable, case: Mapping[str, Any], name: str, errors: Mapping[str, str] | None = None) -> Any:
    """``fn(**case)``; an exception becomes a CheckFailed naming the input, and the likely cause when one of
    ``errors`` (a regular expression searched in "ExceptionType: message" -> a cause) matches it."""
    try:
        return fn(**case)
    except NotImplementedError:
        raise CheckFailed(
            f"{name} is not implemented yet: replace `raise NotImplementedError()` with your code."
        ) from None
    except CheckFailed:
        raise
    except Exception as exc:
        message = f"{name}({_describe_case(case)}) raised {type(exc).__name__}: {exc}"
        cause = error_cause(errors or {}, exc)
        if cause:
            message += f"\n  Likely cause: {cause}"
        raise CheckFailed(message) from exc


# --------------------------------------------------------------------------
# Naming a likely cause from a catalogue
# --------------------------------------------------------------------------
# A check names a likely cause in its catalogue's words, never in a string of its own: a ``*_MISTAKES``
# mapping (description -> the mistaken function, from which the grading tests also build the mistake's
# submission), a ``*_SYMPTOMS`` mapping (description -> a predicate on what the answer did, which the check
# tests itself) or an ``*_ERRORS`` mapping (a regular expression searched in "ExceptionType: message" ->
# description).


def error_cause(errors: Mapping[str, str], exc: BaseException) -> str | None:
    """The description of the first pattern of ``errors`` found in "ExceptionType: message" of ``exc``, or None."""
    raised = f"{type(exc).__name__}: {exc}"
    return next((cause for pattern, cause in errors.items() if re.search(pattern, raised)), None)


def matching_cause(catalogue: Mapping[str, Callable[..., bool]], *args: Any) -> str | None:
    """The first description of ``catalogue`` (description -> predicate) whose predicate holds for ``args``."""
    return next((description for description, holds in catalogue.items() if holds(*args)), None)


def catalogued(catalogue: Mapping[str, Any], entry: Any) -> str:
    """The description under which ``catalogue`` lists ``entry`` (a mistaken function a check recognises itself)."""
    for description, value in catalogue.items():
        if value is entry:
            return description
    raise KeyError(f"{entry!r} is not in the catalogue")


def check_function(
    student_fn: Callable,
    reference_fn: Callable,
    cases: Iterable[Mapping[str, Any]],
    name: str | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    mistakes: Mapping[str, Callable] | None = None,
    hint: str = "",
    errors: Mapping[str, str] | None = None,
) -> None:
    """Compare ``student_fn`` with ``reference_fn`` on every case (a dict of keyword arguments).

    Each function gets its own copy of the inputs, so neither can change what
    the other sees; a student function that modifies its inputs in place is
    reported. When the outputs differ, each entry of ``mistakes`` (a
    description -> a function implementing that mistake) is run on the same
    case; one that reproduces the student's output is named as the likely cause.
    When the student's function raises, ``errors`` (a regular expression
    searched in "ExceptionType: message" -> a description) names the cause of
    the first pattern that matches.
    """
    check_untampered()
    name = name or getattr(student_fn, "__name__", "your function")
    check_answer_rules(student_fn, name=name)
    cases = list(cases)
    if not cases:
        raise ValueError("check_function needs at least one case")
    for number, case in enumerate(cases, start=1):
        inputs = _clone(dict(case))
        actual = _call(student_fn, inputs, name, errors)
        for key, value in case.items():
            if isinstance(value, _Tensor) and _mismatch(inputs[key], value, key, 0.0, 0.0):
                raise CheckFailed(
                    f"{name} changed its input `{key}` in place; compute a new tensor instead "
                    "(e.g. `x - m`, not `x -= m` or `x.sub_(m)`)."
                )
        expected = reference_fn(**_clone(dict(case)))
        reason = _mismatch(actual, expected, "output", atol, rtol)
        if reason is None:
            continue
        lines = [
            f"{name} is not right yet.",
            f"  Case {number} of {len(cases)}: {_describe_case(case)}",
            f"  {reason}",
        ]
        cause = _likely_cause(actual, expected, case, mistakes or {}, atol, rtol)
        if cause:
            lines.append(f"  Likely cause: {cause}")
        elif hint:
            lines.append(f"  Hint: {hint}")
        raise CheckFailed("\n".join(lines))


def check_prediction(
    prediction: Any, choices: Sequence[str], answer: str | Sequence[str] | None = None, name: str = "prediction"
) -> None:
    """A predict-then-run question: ``prediction`` must be one of ``choices`` (letters such as "A".."D").

    Without ``answer`` (the visible self-check) only the form is checked, so the
    cell says nothing about which choice is right. With ``answer`` (one letter,
    or several where more than one is right; kept in the hidden tests) the
    prediction must be among them. Case and surrounding spaces do not matter.
    """
    check_untampered()
    allowed = [c.upper() for c in choices]
    if type(prediction) is not str:  # exactly str: a subclass could lie about ==
        raise CheckFailed(
            f"`{name}` should be one of the letters {', '.join(repr(c) for c in allowed)} (a str), "
            f"got {describe(prediction)}."
        )
    letter = prediction.strip().upper()
    if letter not in allowed:
        raise CheckFailed(f"`{name}` is {prediction!r}; choose one of {', '.join(repr(c) for c in allowed)}.")
    if answer is None:
        return
    right = {answer.upper()} if isinstance(answer, str) else {a.upper() for a in answer}
    if letter not in right:
        raise CheckFailed(
            f"`{name}` = {letter!r} is not what the experiment shows; the text after it explains why."
        )


def _likely_cause(
    actual: Any,
    expected: Any,
    case: Mapping[str, Any],
    mistakes: Mapping[str, Callable],
    atol: float,
    rtol: float,
) -> str | None:
    for description, mistaken_fn in mistakes.items():
        try:
            wrong = mistaken_fn(**_clone(dict(case)))
        except Exception:
            continue
        if _mismatch(wrong, expected, "x", atol, rtol) is None:
            continue  # this mistake does not show on this case
        if _mismatch(actual, wrong, "x", max(atol, 1e-4), max(rtol, 1e-3)) is None:
            return description
    return None


# --------------------------------------------------------------------------
# Forbidding the shortcut: an answer must not just call the reference
# --------------------------------------------------------------------------


class _ForbiddenCall(Exception):
    pass


_MISSING = object()  # marks an attribute the owner did not define itself (e.g. inherited by torch.Tensor)


def _resolve(target: str) -> tuple[Any, str, Any]:
    """'torch.nn.functional.softmax' -> (module, 'softmax', the function)."""
    parts = target.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            owner: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attr in parts[split:-1]:
            owner = getattr(owner, attr)
        return owner, parts[-1], getattr(owner, parts[-1])
    raise ValueError(f"cannot resolve {target!r} to an attribute of an importable module")


def _code_objects(code: types.CodeType) -> Iterable[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _aliases(fn: Callable, forbidden: Mapping[int, str]) -> list[str]:
    """Global or closure names in ``fn`` bound to a forbidden object (``sm = torch.softmax``)."""
    found = []
    code = getattr(fn, "__code__", None)
    if code is None:
        return found
    env = getattr(fn, "__globals__", {})
    for co in _code_objects(code):
        for name in co.co_names:
            value = env.get(name)
            if value is not None and id(value) in forbidden:
                found.append(f"`{name}` is {forbidden[id(value)]}")
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:
            continue
        if id(value) in forbidden:
            found.append(f"a variable holding {forbidden[id(value)]}")
    return found


def forbid_reference(
    student_fn: Callable,
    forbidden: Sequence[str],
    example: Mapping[str, Any],
    name: str | None = None,
    instead: str = "",
) -> None:
    """Fail if ``student_fn`` merely calls a ready-made implementation.

    ``forbidden`` names the shortcuts by dotted path, e.g.
    ``["torch.softmax", "torch.nn.functional.softmax", "torch.Tensor.softmax",
    "course_lib.basics.softmax"]``. Each is replaced, while ``student_fn`` runs
    once on ``example``, by a tripwire; a global alias of one (``from torch
    import softmax as sm``) is caught too.
    """
    check_untampered()
    name = name or getattr(student_fn, "__name__", "your function")
    check_answer_rules(student_fn, name=name)
    resolved = [(target, *_resolve(target)) for target in forbidden]
    by_id = {id(original): f"`{target}`" for target, _, _, original in resolved}
    aliases = _aliases(student_fn, by_id)
    used: list[str] = []

    def tripwire(target: str) -> Callable:
        def _trip(*args: Any, **kwargs: Any) -> Any:
            used.append(target)
            raise _ForbiddenCall(target)

        return _trip

    saved = []
    try:
        for target, owner, attr, _original in resolved:
            saved.append((owner, attr, vars(owner).get(attr, _MISSING)))
            setattr(owner, attr, tripwire(target))
        try:
            student_fn(**_clone(dict(example)))
        except (_ForbiddenCall, NotImplementedError):
            pass
        except Exception:
            pass  # correctness is check_function's job; here we only watch for shortcuts
    finally:
        for owner, attr, previous in reversed(saved):
            if previous is _MISSING:
                delattr(owner, attr)
            else:
                setattr(owner, attr, previous)
    if used or aliases:
        what = ", ".join(dict.fromkeys([f"`{u}`" for u in used] + aliases))
        raise CheckFailed(
            f"{name} uses {what}, which is what this exercise asks you to build yourself."
            + (f" {instead}" if instead else "")
        )

# --------------------------------------------------------------------------
# The answer rules, on the cell that defined what a check receives
# --------------------------------------------------------------------------

_COURSE_LIB = os.path.dirname(os.path.abspath(__file__))
_COURSE_CELLS = ("# Self-check", "# Setup (read-only)")  # the notebooks' own read-only cells


def _code_of(obj: Any, seen: set[int]) -> Iterator[types.CodeType]:
    """The code objects behind a function, a class (its methods), a bound method or a functools.partial."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, functools.partial):
        for part in (obj.func, *obj.args, *obj.keywords.values()):
            yield from _code_of(part, seen)
    elif isinstance(obj, types.MethodType):
        yield from _code_of(obj.__func__, seen)
    elif isinstance(obj, types.FunctionType):
        yield obj.__code__
    elif isinstance(obj, type):
        for cls in obj.__mro__[:-1]:
            for member in vars(cls).values():
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                if isinstance(member, property):
                    yield from (f.__code__ for f in (member.fget, member.fset, member.fdel) if f is not None
                                and isinstance(f, types.FunctionType))
                elif isinstance(member, types.FunctionType):
                    yield member.__code__


def _cell_source(code: types.CodeType) -> str | None:
    """The whole notebook cell ``code`` was compiled from, or None (a library file, or not found)."""
    filename = code.co_filename
    if filename.startswith(_COURSE_LIB + os.sep):
        return None
    entry = linecache.cache.get(filename)
    # IPython (and ipykernel) register each cell with mtime None; real files have an mtime.
    if not entry or len(entry) < 3 or entry[1] is not None:
        return None
    source = "".join(entry[2])
    if source.lstrip().startswith(_COURSE_CELLS):
        return None
    return source


def check_answer_rules(*objects: Any, name: str | None = None) -> None:
    """Fail if a cell that defined one of ``objects`` breaks the answer rules the grader applies.

    Each function, class (its methods), bound method or ``functools.partial``
    (its function and arguments) is traced to the notebook cell that defined it
    (IPython registers each cell's source with :mod:`linecache`); the cell is
    screened with :func:`course_lib.answer_rules.screen`. Objects from library
    files, and cells whose source cannot be found, are not checked.
    """
    from .answer_rules import screen

    sources: dict[str, None] = {}
    for obj in objects:
        for code in _code_of(obj, set()):
            source = _cell_source(code)
            if source is not None:
                sources.setdefault(source)
    for source in sources:
        violations = screen(source)
        if violations:
            what = name or getattr(objects[0], "__qualname__", None) or "your code"
            lines = [f"{what} is defined in a cell that breaks the course's answer rules:"]
            lines += [f"  {v.message}" for v in violations]
            lines.append(
                "The grader will not run this cell and will flag the submission for your instructor: "
                "rewrite those lines (and restart the kernel if they already ran)."
            )
            raise CheckFailed("\n".join(lines))


@contextlib.contextmanager
def substitute(namespace: MutableMapping[str, Any], **names: Any) -> Iterator[None]:
    """Temporarily bind ``names`` in ``namespace`` (a notebook's ``globals()``), then restore them.

    Lets a check run a student's loop with the reference step (notebooks 01 and 03), so a slip in the
    step is not counted twice.
    """
    missing = object()
    saved = {k: namespace.get(k, missing) for k in names}
    namespace.update(names)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is missing:
                namespace.pop(k, None)
            else:
                namespace[k] = v


__all__ = [
    "CheckFailed",
    "catalogued",
    "check_answer_rules",
    "check_close",
    "check_function",
    "check_prediction",
    "check_shape",
    "check_untampered",
    "describe",
    "error_cause",
    "forbid_reference",
    "matching_cause",
    "passed",
    "substitute",
]
