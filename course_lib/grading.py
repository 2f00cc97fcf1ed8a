"""What the notebooks' self-check cells call.

Each helper raises :class:`CheckFailed` (an ``AssertionError``, so nbgrader
scores the cell 0) with a message that says *what* differs, on *which input*,
and, where a known mistake reproduces the wrong answer, its *likely cause*.

The helpers keep private references to the comparison functions they use
(``torch.allclose`` and friends), captured when this module is imported in a
notebook's setup cell. A student who rebinds ``torch.allclose`` or
``np.allclose`` in an answer cell therefore gains nothing, and the checks say
so. nbgrader does not sandbox student code; this guards against the common
shortcut, not against deliberate tampering with this module.
"""

from __future__ import annotations

import importlib
import math
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
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


class CheckFailed(AssertionError):
    """A self-check found a difference; the message says what and why."""


def passed(message: str = "All tests passed.") -> None:
    """Print the line a student hopes to see."""
    print(f"\N{WHITE HEAVY CHECK MARK} {message}")


def check_untampered() -> None:
    """Fail if an answer cell replaced a comparison function the checks rely on."""
    for qualname, (owner, attr, original) in _ORIGINALS.items():
        if getattr(owner, attr, None) is not original:
            raise CheckFailed(
                f"`{qualname}` has been replaced in this notebook. The checks do not use it, "
                "so this cannot make a test pass; restore it (restart the kernel) and fix the "
                "function instead."
            )


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
            return f"{name} should have {len(expected)} values, got {len(actual)}."
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
        if isinstance(actual, _Tensor) and actual.numel() == 1:
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


def _call(fn: Callable, case: Mapping[str, Any], name: str) -> Any:
    try:
        return fn(**case)
    except NotImplementedError:
        raise CheckFailed(
            f"{name} is not implemented yet: replace `raise NotImplementedError()` with your code."
        ) from None
    except CheckFailed:
        raise
    except Exception as exc:
        raise CheckFailed(
            f"{name}({_describe_case(case)}) raised {type(exc).__name__}: {exc}"
        ) from exc


def check_function(
    student_fn: Callable,
    reference_fn: Callable,
    cases: Iterable[Mapping[str, Any]],
    name: str | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    mistakes: Mapping[str, Callable] | None = None,
    hint: str = "",
) -> None:
    """Compare ``student_fn`` with ``reference_fn`` on every case (a dict of keyword arguments).

    Each function gets its own copy of the inputs, so neither can change what
    the other sees; a student function that modifies its inputs in place is
    reported. When the outputs differ, each entry of ``mistakes`` (a
    description -> a function implementing that mistake) is run on the same
    case; one that reproduces the student's output is named as the likely cause.
    """
    check_untampered()
    name = name or getattr(student_fn, "__name__", "your function")
    cases = list(cases)
    if not cases:
        raise ValueError("check_function needs at least one case")
    for number, case in enumerate(cases, start=1):
        inputs = _clone(dict(case))
        actual = _call(student_fn, inputs, name)
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

__all__ = [
    "CheckFailed",
    "check_close",
    "check_function",
    "check_shape",
    "check_untampered",
    "describe",
    "forbid_reference",
    "passed",
]
