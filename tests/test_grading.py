"""course_lib.grading: the check helpers fail when they should, pass when they should, and say why."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib import basics
from course_lib.checks import welcome
from course_lib.grading import (
    CheckFailed,
    catalogued,
    check_close,
    check_function,
    check_prediction,
    check_shape,
    check_untampered,
    describe,
    error_cause,
    forbid_reference,
    matching_cause,
)


def test_check_failed_is_an_assertion_error():
    assert issubclass(CheckFailed, AssertionError)  # nbgrader scores any exception 0; pytest shows it nicely


# ---- check_shape / check_close -------------------------------------------------------------


def test_check_shape_passes_and_fails_with_both_shapes_named():
    check_shape(torch.zeros(2, 3), (2, 3))
    with pytest.raises(CheckFailed, match=r"\(3, 2\); expected \(2, 3\).*transpose"):
        check_shape(torch.zeros(3, 2), (2, 3))


@pytest.mark.parametrize(
    ("value", "message"),
    [(None, "forget to `return`"), (np.zeros(3), "NumPy array"), ([1.0, 2.0], "should be a torch.Tensor")],
)
def test_check_close_names_the_wrong_type(value, message):
    with pytest.raises(CheckFailed, match=message):
        check_close(value, torch.zeros(3))


def test_check_close_locates_the_worst_entry():
    expected = torch.zeros(2, 3)
    actual = expected.clone()
    actual[1, 2] = 0.5
    actual[0, 0] = 0.1
    with pytest.raises(CheckFailed, match=r"2 of 6 entries differ; the worst is at \[1, 2\]: got 0.5, expected 0"):
        check_close(actual, expected)
    check_close(expected + 1e-7, expected)


def test_check_close_reports_nan_where_finite_expected():
    actual = torch.tensor([0.5, float("nan")])
    with pytest.raises(CheckFailed, match=r"NaN where a finite value is expected, e.g. at \[1\]"):
        check_close(actual, torch.tensor([0.5, 0.5]))


def test_check_close_accepts_matching_infinities_and_rejects_others():
    check_close(torch.tensor([-float("inf"), 1.0]), torch.tensor([-float("inf"), 1.0]))
    with pytest.raises(CheckFailed, match="non-finite"):
        check_close(torch.tensor([1.0, 1.0]), torch.tensor([-float("inf"), 1.0]))


def test_check_close_numbers_tuples_and_integers():
    check_close(torch.tensor(2.0), 2.0)
    with pytest.raises(CheckFailed, match="is 3; expected 2"):
        check_close(3.0, 2.0)
    with pytest.raises(CheckFailed, match=r"output\[1\]"):
        check_close((torch.ones(2), torch.zeros(2)), (torch.ones(2), torch.ones(2)))
    with pytest.raises(CheckFailed, match="differs at 1 entry"):
        check_close(torch.tensor([1, 2, 4]), torch.tensor([1, 2, 3]))


def test_check_close_hint_is_appended():
    with pytest.raises(CheckFailed, match="Hint: divide by the sum"):
        check_close(torch.ones(2), torch.zeros(2), hint="divide by the sum")


def test_describe_is_short():
    assert describe(torch.zeros(2, 3)).startswith("tensor float32 (2, 3)")
    assert len(describe("x" * 500)) <= 60


# ---- check_function ------------------------------------------------------------------------


def test_check_function_names_the_likely_mistake():
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))

    def wrong_axis(x, dim=-1):
        e = torch.exp(x - x.amax(dim=0, keepdim=True))
        return e / e.sum(dim=0, keepdim=True)

    with pytest.raises(CheckFailed) as info:
        check_function(wrong_axis, basics.softmax, [{"x": x, "dim": -1}], mistakes=welcome.SOFTMAX_MISTAKES)
    message = str(info.value)
    assert "Case 1 of 1" in message and "(4, 5)" in message
    assert "Likely cause: normalised along the wrong axis" in message


def test_check_function_names_overflow_for_the_unshifted_softmax():
    def unshifted(x, dim=-1):
        return torch.exp(x) / torch.exp(x).sum(dim=dim, keepdim=True)

    with pytest.raises(CheckFailed, match="Likely cause: exp overflowed"):
        check_function(
            unshifted, basics.softmax, [{"x": torch.tensor([1000.0, 1001.0])}], mistakes=welcome.SOFTMAX_MISTAKES
        )


def test_check_function_falls_back_to_the_hint_when_no_mistake_matches():
    with pytest.raises(CheckFailed, match="Hint: think again") as info:
        check_function(
            lambda x, dim=-1: torch.zeros_like(x),
            basics.softmax,
            [{"x": torch.randn(3)}],
            mistakes=welcome.SOFTMAX_MISTAKES,
            hint="think again",
        )
    assert "Likely cause" not in str(info.value)


def test_check_function_passes_a_correct_function():
    check_function(lambda x, dim=-1: torch.softmax(x, dim), basics.softmax, [{"x": torch.randn(3, 4), "dim": 0}])


def test_check_function_reports_not_implemented_and_exceptions():
    def stub(x, dim=-1):
        raise NotImplementedError()

    with pytest.raises(CheckFailed, match="not implemented yet"):
        check_function(stub, basics.softmax, [{"x": torch.randn(3)}])
    with pytest.raises(CheckFailed, match=r"raised ZeroDivisionError"):
        check_function(lambda x, dim=-1: 1 / 0, basics.softmax, [{"x": torch.randn(3)}])


def test_check_function_catches_in_place_modification_of_inputs():
    def in_place(x, dim=-1):
        x -= x.amax(dim=dim, keepdim=True)
        e = x.exp_()
        return e / e.sum(dim=dim, keepdim=True)

    with pytest.raises(CheckFailed, match="changed its input `x` in place"):
        check_function(in_place, basics.softmax, [{"x": torch.randn(3)}])


def test_inputs_are_copied_so_the_reference_sees_the_original():
    seen = []

    def reference(x):
        seen.append(x.clone())
        return x

    original = torch.arange(3.0)
    check_function(lambda x: x.clone(), reference, [{"x": original}])
    assert torch.equal(seen[0], original)


# ---- forbid_reference ------------------------------------------------------------------------


def _example():
    return {"x": torch.randn(2, 3), "dim": -1}


@pytest.mark.parametrize(
    "shortcut",
    [
        lambda x, dim=-1: torch.softmax(x, dim),
        lambda x, dim=-1: torch.nn.functional.softmax(x, dim=dim),
        lambda x, dim=-1: x.softmax(dim),
        lambda x, dim=-1: basics.softmax(x, dim),
    ],
    ids=["torch.softmax", "F.softmax", "Tensor.softmax", "course_lib"],
)
def test_forbid_reference_catches_direct_calls(shortcut):
    with pytest.raises(CheckFailed, match="build yourself"):
        forbid_reference(shortcut, welcome.SOFTMAX_SHORTCUTS, _example(), name="softmax")


def test_forbid_reference_catches_an_alias_even_when_it_is_never_called():
    namespace = {}
    exec(
        "from torch.nn.functional import softmax as sm\n"
        "def softmax(x, dim=-1):\n"
        "    if x.numel() > 10**9:\n"
        "        return sm(x, dim)\n"
        "    return x\n",
        namespace,
    )
    with pytest.raises(CheckFailed, match="`sm` is `torch.nn.functional.softmax`"):
        forbid_reference(namespace["softmax"], welcome.SOFTMAX_SHORTCUTS, _example())


def test_forbid_reference_allows_an_honest_solution_and_restores_everything():
    before = (torch.softmax, torch.nn.functional.softmax, basics.softmax)
    forbid_reference(_honest, welcome.SOFTMAX_SHORTCUTS, _example())
    assert (torch.softmax, torch.nn.functional.softmax, basics.softmax) == before
    assert "softmax" not in vars(torch.Tensor)
    x = torch.randn(3)
    assert torch.allclose(x.softmax(0), basics.softmax(x, 0))


def _honest(x, dim=-1):
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    return e / e.sum(dim=dim, keepdim=True)


def test_forbid_reference_restores_even_when_the_student_function_raises():
    def broken(x, dim=-1):
        raise RuntimeError("oops")

    forbid_reference(broken, welcome.SOFTMAX_SHORTCUTS, _example())
    assert torch.softmax(torch.zeros(2), 0).sum() == 1


# ---- rebinding comparison functions ------------------------------------------------------------


def test_rebinding_allclose_does_not_make_a_wrong_answer_pass(monkeypatch):
    monkeypatch.setattr(torch, "allclose", lambda *a, **k: True)
    monkeypatch.setattr(np, "allclose", lambda *a, **k: True)
    with pytest.raises(CheckFailed, match="`torch.allclose` has been replaced"):
        check_untampered()
    with pytest.raises(CheckFailed, match="has been replaced"):
        check_function(lambda x, dim=-1: torch.exp(x), basics.softmax, [{"x": torch.randn(3)}])


def test_comparisons_do_not_use_the_public_allclose(monkeypatch):
    """Even with check_untampered bypassed, the comparison itself uses private references."""
    import course_lib.grading as grading

    monkeypatch.setattr(grading, "check_untampered", lambda: None)
    monkeypatch.setattr(torch, "allclose", lambda *a, **k: True)
    monkeypatch.setattr(torch, "isclose", lambda a, b, **k: torch.ones_like(a, dtype=torch.bool))
    with pytest.raises(CheckFailed):
        check_close(torch.ones(3), torch.zeros(3))


def test_substitute_restores_names():
    from course_lib.grading import substitute

    ns = {"a": 1}
    with substitute(ns, a=2, b=3):
        assert ns == {"a": 2, "b": 3}
    assert ns == {"a": 1}


def test_check_prediction_checks_the_form_without_an_answer_and_the_choice_with_one():
    check_prediction(" b", "ABC")  # visible self-check: any valid letter passes
    check_prediction("B", "ABC", answer="b")
    check_prediction("C", "ABCD", answer=("B", "C"))
    with pytest.raises(CheckFailed, match="choose one of 'A', 'B', 'C'"):
        check_prediction("E", "ABC")
    with pytest.raises(CheckFailed, match="is not what the experiment shows"):
        check_prediction("A", "ABC", answer="B")
    with pytest.raises(CheckFailed, match="should be one of the letters"):
        check_prediction(None, "ABC", name="prediction_scale")


def test_check_prediction_refuses_a_str_subclass_that_equals_everything():
    class Always(str):
        def __eq__(self, other):
            return True

        __hash__ = str.__hash__

    with pytest.raises(CheckFailed, match="a str"):
        check_prediction(Always("A"), "ABC", answer="B")


def test_check_function_names_the_likely_cause_of_an_exception():
    def crashes(x):
        return x[10]

    cases = [{"x": torch.zeros(3)}]
    errors = {r"IndexError: index \d+ is out of bounds": "indexed past the end", r"KeyError": "not this one"}
    with pytest.raises(CheckFailed, match="raised IndexError") as caught:
        check_function(crashes, lambda x: x, cases, errors=errors)
    assert "Likely cause: indexed past the end" in str(caught.value)
    assert "not this one" not in str(caught.value)
    with pytest.raises(CheckFailed) as caught:  # no pattern matches: the error alone
        check_function(crashes, lambda x: x, cases, errors={"KeyError": "not this one"})
    assert "Likely cause" not in str(caught.value)


def test_a_cause_is_read_from_its_catalogue():
    """Checks that test a property name the cause in their catalogue's words: by predicate, by entry, by error."""

    def negative(x):
        return x < 0

    def big(x):
        return abs(x) > 10

    catalogue = {"went negative": negative, "grew too big": big}
    assert matching_cause(catalogue, -20) == "went negative"  # the first that holds
    assert matching_cause(catalogue, 20) == "grew too big"
    assert matching_cause(catalogue, 5) is None
    assert catalogued(catalogue, big) == "grew too big"
    with pytest.raises(KeyError):
        catalogued(catalogue, abs)
    errors = {r"^ZeroDivisionError": "divided by zero", r"IndexError: index \d+": "indexed past the end"}
    assert error_cause(errors, ZeroDivisionError("division by zero")) == "divided by zero"
    assert error_cause(errors, IndexError("index 3 is out of bounds")) == "indexed past the end"
    assert error_cause(errors, KeyError("x")) is None


# ---------------------------------------------------------------------------
# What a student sees of a failed check in Jupyter (CheckFailed._render_traceback_)
# ---------------------------------------------------------------------------


def test_a_failed_check_renders_its_message_and_only_the_students_frames():
    def softmax(x, dim=-1):
        return x.undefined_thing()

    with pytest.raises(CheckFailed) as crashed:
        welcome.check_softmax_values(softmax)
    shown = "\n".join(crashed.value._render_traceback_())
    assert "x.undefined_thing()" in shown and "AttributeError" in shown  # the student's own line
    assert "course_lib" not in shown.replace("course_lib.", "")  # no frame of the grader's code
    assert shown.endswith(f"CheckFailed: {crashed.value}")

    with pytest.raises(CheckFailed) as wrong:
        welcome.check_softmax_values(lambda x, dim=-1: x.exp() / x.exp().sum())
    assert wrong.value._render_traceback_() == [f"CheckFailed: {wrong.value}"]


@pytest.mark.slow
def test_jupyter_shows_a_failed_check_without_the_graders_frames():
    """Through a real kernel: the error output of a failing self-check cell is the check's message (and the
    student's own frames when their code raised), not a traceback through course_lib/checks and grading.py."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("def softmax(x, dim=-1):\n    return x.exp() / x.exp().sum()"),
        nbformat.v4.new_code_cell("from course_lib.checks.welcome import check_softmax_values\n"
                                  "check_softmax_values(softmax)"),
    ]
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True).execute()
    (error,) = [out for out in nb.cells[1].outputs if out.output_type == "error"]
    assert error.ename == "CheckFailed"
    assert len(error.traceback) == 1 and error.traceback[0].startswith("CheckFailed: softmax is not right yet")
