"""tools/catalogue.py: mistake submissions generated from their catalogue entries (issue 15: one copy of a mistake).

The round trip (test_roundtrip.py) grades every generated submission; these tests are the fast part: what the
generator writes, what it refuses, and that nothing it could write is written out by hand as well.
"""

from __future__ import annotations

import ast
import dataclasses
import types

import catalogue
import harness
import pytest

from course_lib.checks import fine_tuning, welcome

ASSIGNMENTS = harness.assignments()


def _generate(assignment: str, name: str) -> str:
    mistake = next(m for m in harness.declared_mistakes(assignment) if m.name == name)
    context = harness.answer_context(assignment)
    return dataclasses.replace(mistake, code=harness.FROM_CATALOGUE).generated(**context).code


def _top_level(code: str) -> dict[str, ast.stmt]:
    return {node.name: node for node in ast.parse(code).body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_each_generated_answer_defines_its_cell_with_the_answers_shape(assignment):
    """A generated cell parses, defines the answer under its name with the solution's parameters (or as a class),
    and never reaches into course_lib.checks, where the catalogue lives."""
    definitions = harness.answer_definitions(assignment)
    generated = [m for m in harness.declared_mistakes(assignment) if m.code == harness.FROM_CATALOGUE]
    for mistake in harness.load_mistakes(assignment):
        if mistake.name not in {m.name for m in generated}:
            continue
        name = mistake.function or mistake.cell
        node = _top_level(mistake.code)[name]
        shape = "class" if isinstance(node, ast.ClassDef) else catalogue.parameters_of(node)
        assert catalogue.parameter_names(shape) == catalogue.parameter_names(definitions[name]), mistake.name
        assert "course_lib.checks" not in mistake.code, mistake.name


def test_written_out_mistakes_are_the_ones_no_catalogue_function_can_stand_for():
    """A mistake is written once: where its cause is a *_MISTAKES entry that the generator can turn into the
    answer cell, the submission must say code=FROM_CATALOGUE instead of a second, hand-written copy.
    A debug exercise's code as shipped (``harness.as_shipped``) is read from the notebook, not written out."""
    twice = {}
    for assignment in ASSIGNMENTS:
        context = harness.answer_context(assignment)
        shipped = set(harness.shipped_answers(assignment).values())
        for mistake in harness.declared_mistakes(assignment):
            if not mistake.cause or mistake.code in (harness.FROM_CATALOGUE, *shipped):
                continue
            try:
                dataclasses.replace(mistake, code=harness.FROM_CATALOGUE).generated(**context)
            except ValueError:
                continue  # a *_SYMPTOMS or *_ERRORS entry: no mistaken function to write the cell from
            twice[f"{assignment}/{mistake.name}"] = mistake.cause
    assert not twice, f"written out although their catalogue entry generates them: {twice}"


def test_a_lambda_becomes_a_def_returning_its_expression():
    code = _generate("07_instruction_tuning", "loss-not-shifted")
    fn = _top_level(code)["masked_lm_loss"]
    assert catalogue.parameters_of(fn) == "(logits, ids, mask)"
    assert isinstance(fn.body[-1], ast.Return) and "shift=False" in ast.unparse(fn.body[-1])
    assert "_token_nll" in _top_level(code)  # the private helper it calls comes along


def test_two_lambdas_on_one_line_are_told_apart_by_column():
    code = _generate("07_instruction_tuning", "dpo-ratio-upside-down")
    loss = _top_level(code)["dpo_loss"]
    nested = {n.name: ast.unparse(n) for n in loss.body if isinstance(n, ast.FunctionDef)}
    assert "return b * (r - p)" in nested["chosen_reward"] and "return b * (r - p)" in nested["rejected_reward"]
    assert "return rc - pc - (rr - pr)" in nested["margin"]


def test_a_switchboard_closure_gets_its_switches_assigned():
    code = _generate("01_gans", "wgan-critic-sign")
    step = _top_level(code)["wgan_gp_train_step"]
    assert ast.unparse(step.body[0]) == "switches = {'critic_sign': -1.0}"
    assert "_wgan_step" in _top_level(code)


def test_an_adaptor_is_peeled_off_down_to_the_mistaken_class():
    """partial(lora_output, _LoRANoScale) and the closure _block_mistake(_BlockPostLN) stand for their classes,
    written with their private base classes and the answer cell's own imports."""
    code = _generate("06_fine_tuning", "lora-no-scale")
    classes = _top_level(code)
    assert isinstance(classes["LoRALinear"], ast.ClassDef) and "_LoRA" in classes
    assert [ast.unparse(b) for b in classes["LoRALinear"].bases] == ["_LoRA"]
    block = _generate("05_pretraining", "block-post-ln")
    assert block.lstrip().startswith("from course_lib.gpt import MLP, CausalSelfAttention, GPTConfig")
    assert isinstance(_top_level(block)["Block"], ast.ClassDef)


def test_a_partial_of_a_private_function_becomes_a_wrapper_with_the_answers_parameters():
    code = _generate("08_showdown", "scorecard-pr-swapped")
    wrapper = _top_level(code)["scorecard"]
    assert catalogue.parameters_of(wrapper) == "(samples, train, heldout, k=3)"
    assert ast.unparse(wrapper.body[0]) == (
        "return _card(samples=samples, train=train, heldout=heldout, k=k, swap_pr=True)"
    )


def _softmax_via_reference(x, dim=-1):
    return softmax(x, dim)  # noqa: F821 - run with checks.welcome's globals, where softmax is the reference


def test_a_mistake_that_calls_the_reference_it_replaces_is_refused():
    """A catalogue function of checks.welcome that calls ``softmax`` stands for a student's cross_entropy (which
    may call the student's softmax) but not for a student's softmax (which would call itself)."""
    in_welcome = types.FunctionType(_softmax_via_reference.__code__, vars(welcome), "_softmax_via_reference")
    assert in_welcome.__module__ == welcome.__name__
    with pytest.raises(ValueError, match="reads 'softmax'"):
        catalogue.catalogue_source(in_welcome, "softmax", {"torch", "softmax"})
    assert "return softmax(x, dim)" in catalogue.catalogue_source(in_welcome, "cross_entropy", {"torch", "softmax"})
    with pytest.raises(ValueError, match="reads 'torch'"):
        catalogue.catalogue_source(welcome._softmax_other_axis, "softmax", set())


def test_a_catalogue_entry_of_another_shape_is_refused():
    """The LoRA formula as a function is not a LoRALinear class; a predicate is not a function of the answer."""
    with pytest.raises(ValueError, match="the answer's is class"):
        catalogue.catalogue_source(fine_tuning._LoRANoScale.forward, "LoRALinear", {"torch", "nn"}, expected="class")
    with pytest.raises(ValueError, match="0 catalogues hold it"):
        catalogue.catalogue_function("B is not zero at the start")  # a *_SYMPTOMS entry


def test_every_catalogue_a_check_applies_as_predicates_is_named_symptoms():
    """The generator reads *_MISTAKES values as mistaken answers, so a catalogue of predicates (the ones
    grading.matching_cause applies) must be a *_SYMPTOMS mapping, never a *_MISTAKES one."""
    import importlib
    import inspect
    import pkgutil
    import re

    import course_lib.checks

    applied = set()
    for info in pkgutil.iter_modules(course_lib.checks.__path__):
        module = importlib.import_module(f"course_lib.checks.{info.name}")
        applied |= set(re.findall(r"matching_cause\(([A-Z_]+)", inspect.getsource(module)))
    assert applied and all(name.endswith("_SYMPTOMS") for name in applied), sorted(applied)
