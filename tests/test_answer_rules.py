"""The answer rules (course_lib.answer_rules): honest code passes, every kind of tampering is caught.

1. No honest code is flagged: every answer cell of the solutions, every
   unlocked cell of the solutions and of the student releases (experiment
   cells a student may leave as they are), and every common-mistake
   submission in ``tests/submissions`` screens clean -- except the mistakes
   marked ``flagged`` (they tamper on purpose), which must be flagged.
   Honest course code the allow-lists admit on purpose: notebook 05 imports
   ``course_lib.checks.pretraining.slow_bpe_reference``, ``socket`` (for
   ``create_connection``) and two ``transformers`` classes; the LoRA
   solutions call ``setattr(owner, attr, layer)`` and ``getattr(owner, attr)``
   with a computed name; notebook 02 reads ``NoiseSchedule.__dataclass_fields__``
   and notebook 05 prints ``type(exc).__name__``.
2. Each threat class (IPython hooks, patching, introspection, lying objects,
   reading files, obfuscation) is caught by at least two different attempts,
   each with a message that says what and on which line.
3. The self-checks run the same screen on the cell that defined the function
   or class they receive, as IPython registers it in ``linecache``.
4. ``check_untampered`` notices hooks registered in a real IPython shell.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import itertools
import linecache
import types
from pathlib import Path

import harness
import nbformat
import pytest
import torch

from course_lib import answer_rules, grading
from course_lib.answer_rules import RULES, Violation, explain, screen, screen_notebook
from course_lib.grading import CheckFailed, check_answer_rules, check_close, check_function, forbid_reference

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------
# 1. Honest code is never flagged
# --------------------------------------------------------------------------


def _code_cells(path: Path):
    for index, cell in enumerate(nbformat.read(str(path), as_version=4).cells):
        if cell.cell_type == "code" and cell.source.strip():
            yield index, cell, harness.nbgrader_meta(cell)


def _honest_cells(path: Path, answers: bool) -> list[tuple[int, str]]:
    """Answer cells (``answers``) and unlocked cells a student may leave as released."""
    found = []
    for index, cell, meta in _code_cells(path):
        is_answer = meta.get("solution") and not meta.get("grade")
        unlocked = not meta.get("locked") and not meta.get("grade") and not meta.get("solution")
        if (answers and is_answer) or unlocked:
            found.append((index, cell.source))
    return found


SOLUTIONS = sorted((ROOT / "solutions").glob("*/*.ipynb"))
RELEASES = sorted((ROOT / "notebooks").glob("*/*.ipynb"))


def _flagged_report(cells: list[tuple[object, str]]) -> str:
    lines = []
    for where, source in cells:
        violations = screen(source)
        if violations:
            lines.append(f"{where}:\n{explain(violations)}")
    return "\n".join(lines)


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.parent.name)
def test_no_answer_or_experiment_cell_of_a_solution_is_flagged(path):
    cells = _honest_cells(path, answers=True)
    assert any(True for _ in cells)
    assert not _flagged_report(cells), _flagged_report(cells)


@pytest.mark.parametrize("path", RELEASES, ids=lambda p: p.parent.name)
def test_no_unlocked_cell_of_a_student_release_is_flagged(path):
    cells = _honest_cells(path, answers=True)  # the release's answer cells hold `raise NotImplementedError()`
    assert not _flagged_report(cells), _flagged_report(cells)


@pytest.mark.parametrize("assignment", harness.assignments())
def test_common_mistakes_are_clean_and_tampering_mistakes_are_flagged(assignment):
    mistakes = harness.load_mistakes(assignment)
    honest = [(m.name, m.code) for m in mistakes if not getattr(m, "flagged", False)]
    assert not _flagged_report(honest), _flagged_report(honest)
    for mistake in mistakes:
        if getattr(mistake, "flagged", False):
            assert screen(mistake.code), f"{mistake.name} tampers with the grader but screens clean"


def test_screen_notebook_finds_nothing_in_the_solutions():
    assert all(screen_notebook(str(path)) == {} for path in SOLUTIONS)


def test_the_notebook_names_cover_what_the_read_only_cells_import():
    """An answer cell uses names (torch, nn, F, sys, reference classes) that the setup and test cells import."""
    refs = answer_rules._notebook_refs()
    missing = []
    for path in SOLUTIONS:
        for _, cell, meta in _code_cells(path):
            if not meta.get("locked") or meta.get("solution"):
                continue
            for name, target in _import_bindings(cell.source):
                kind = _kind(target)
                if kind in ("module", "class") and name not in refs:
                    missing.append(f"{name} = {target} ({path.parent.name})")
    assert not missing, "add these to answer_rules.NOTEBOOK_IMPORTS:\n" + "\n".join(sorted(set(missing)))


def _import_bindings(source: str):
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                yield (alias.asname or top), (alias.name if alias.asname else top)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                yield alias.asname or alias.name, f"{node.module}.{alias.name}"


def _kind(target: str) -> str:
    try:
        return "module" if importlib.util.find_spec(target) else "object"
    except (ImportError, ValueError):
        pass
    module, _, attr = target.rpartition(".")
    value = getattr(importlib.import_module(module), attr)
    if isinstance(value, types.ModuleType):
        return "module"
    return "class" if isinstance(value, type) and value.__module__ != "builtins" else "object"


# --------------------------------------------------------------------------
# 2. Every threat class is caught, by at least two different attempts
# --------------------------------------------------------------------------

# threat class -> attempt -> (cell source, the rules of which at least one must be reported)
THREATS: dict[str, dict[str, tuple[str, set[str]]]] = {
    "ipython-hooks": {
        "input-transformer": ("get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])",
                              {"ipython"}),
        "custom-exc": ("ip = get_ipython()\nip.set_custom_exc((Exception,), lambda *a, **k: None)", {"ipython"}),
        "events": ("def forget(result):\n    result.error_in_exec = None\n"
                   "get_ipython().events.register('post_run_cell', forget)", {"ipython"}),
        "register-magic": ("get_ipython().register_magic_function(print, 'line', 'p')", {"ipython"}),
        "magic-import": ("from IPython.core.magic import register_line_magic", {"import"}),
        "load-magic": ("%load ../../../solutions/00_welcome/welcome.ipynb", {"ipython"}),
        "shell-command": ("!cat ../../../solutions/00_welcome/welcome.ipynb", {"ipython"}),
        "cell-magic": ("%%capture\nprint(1)", {"ipython"}),
        "config-magic": ('%config InteractiveShell.ast_node_interactivity = "none"', {"ipython"}),
        "code-inside-an-allowed-magic": ("%time grader = get_ipython()", {"ipython"}),
        "code-inside-a-cell-magic": ("%%timeit -n 1\nimport sys\nsys.modules.clear()", {"import"}),
        "history-in": ("hidden_tests = In[-2]", {"history"}),
        "history-ih": ("source = _ih[-1]", {"history"}),
        "history-out": ("previous = _\n_ = 0", {"history"}),
    },
    "patching": {
        "torch-allclose": ("torch.allclose = lambda *args, **kwargs: True", {"patch"}),
        "functional-softmax": ("F.softmax = lambda x, dim=-1: x", {"patch"}),
        "numpy-isclose": ("np.isclose = lambda *a, **k: True", {"patch"}),
        "alias-then-patch": ("t = torch\nt.allclose = print", {"alias"}),
        "alias-in-a-list": ("mods = [np]\nmods[0].allclose = print", {"alias"}),
        "alias-a-class": ("T = torch.Tensor\nT.sub = lambda self, other: self", {"alias"}),
        "sys-modules": ("import sys\nsys.modules['course_lib.grading'].check_function = print", {"import"}),
        "sys-modules-setup-cell-name": ("sys.modules['course_lib.grading'].check_function = print",
                                        {"module", "patch"}),
        "builtins": ("import builtins\nbuiltins.isinstance = lambda *a: True", {"import", "patch"}),
        "grading-import": ("import course_lib.grading as g\ng.check_close = print", {"import"}),
        "grading-attribute": ("course_lib.grading.check_close = lambda *a, **k: None", {"module", "patch"}),
        "setattr-module": ("for name in ['check_close']:\n    setattr(course_lib, name, print)", {"getattr"}),
        "vars-module": ("vars(torch)['allclose'] = print", {"namespace"}),
        "dunder-method": ("torch.Tensor.__eq__ = lambda self, other: True", {"dunder"}),
        "another-cells-object": ("SOFTMAX_MISTAKES['nothing'] = print", {"patch"}),
        "augmented-and-del": ("torch.pi += 1\ndel F.relu", {"patch"}),
        "global-rebind": ("def f():\n    global torch\n    torch = None", {"scope"}),
        "abc-register": ("import collections.abc\ncollections.abc.Sequence.register(dict)", {"patch"}),
    },
    "introspection": {
        "getframe": ("import sys\n\ndef softmax(x, dim=-1):\n"
                     "    return sys._getframe(2).f_locals['reference_fn'](x=x, dim=dim)", {"import"}),
        "inspect-stack": ("import inspect\nframes = inspect.stack()", {"import"}),
        "generator-frame": ("def softmax(x, dim=-1):\n    def probe():\n        yield\n    gen = probe()\n"
                            "    return gen.gi_frame.f_back.f_globals['reference_fn'](x)", {"frame"}),
        "traceback-frame": ("try:\n    raise ValueError\nexcept ValueError as e:\n"
                            "    grader = e.__traceback__.tb_frame.f_back", {"dunder", "frame"}),
        "gc": ("import gc\nobjects = gc.get_objects()", {"import"}),
        "code-object": ("def f():\n    pass\nconsts = f.__code__.co_consts", {"dunder", "frame"}),
        "function-globals": ("secret = check_function.__globals__['_ORIGINALS']", {"dunder"}),
        "hook-on-the-grader-model": ("def apply(model):\n    model.register_forward_hook(lambda *a: None)",
                                     {"hook"}),
        "global-module-hook": ("torch.nn.modules.module.register_module_forward_hook(print)", {"hook"}),
        "hook-through-internals": ("class M(nn.Module):\n    def hack(self):\n"
                                   "        self._forward_hooks = self._forward_hooks\n"
                                   "        self._forward_hooks[0] = print", {"private"}),
    },
    "lying-objects": {
        "tensor-subclass": ("class Agreeable(torch.Tensor):\n    def __eq__(self, other):\n        return True",
                            {"class"}),
        "torch-function": ("class Agreeable:\n    @classmethod\n"
                           "    def __torch_function__(cls, func, types, args=(), kwargs=None):\n        return True",
                           {"class"}),
        "fake-shape-and-dtype": ("class Anything:\n    dtype = torch.float32\n\n    @property\n"
                                 "    def shape(self):\n        return (2, 3)", {"impersonation"}),
        "type-call": ("Yes = type('Yes', (torch.Tensor,), {'__eq__': lambda self, other: True})", {"type"}),
        "as-subclass": ("def softmax(x, dim=-1):\n    return x.as_subclass(Agreeable)", {"impersonation"}),
        "builtin-subclass": ("class Always(float):\n    pass", {"class"}),
        "bool-method": ("class Yes:\n    def __bool__(self):\n        return True", {"class"}),
        "class-attribute-dunder": ("class Yes:\n    __eq__ = lambda self, other: True", {"class"}),
        "metaclass": ("class Meta(metaclass=Base):\n    pass", {"class"}),
        "make-dataclass": ("import dataclasses\nT = dataclasses.make_dataclass('T', ['shape'])", {"class"}),
        "module-reports-fewer-parameters": ("class LoRALinear(nn.Module):\n"
                                            "    def named_parameters(self, *args, **kwargs):\n"
                                            "        return iter([])", {"class"}),
    },
    "reading-files": {
        "open": ("nb = open('../../../solutions/00_welcome/welcome.ipynb').read()", {"files"}),
        "pathlib": ("from pathlib import Path\ntext = Path('/').joinpath('solutions').read_text()", {"import"}),
        "path-method": ("text = some_path.read_text()", {"files"}),
        "torch-load": ("state = torch.load('/tmp/secret.pt')", {"files"}),
        "numpy-loadtxt": ("rows = np.loadtxt('grades.csv')", {"files"}),
        "numpy-import": ("from numpy import fromfile", {"files"}),
        "importlib": ("import importlib\nos = importlib.import_module('os')", {"import"}),
        "through-course-lib": ("names = course_lib.env.os.listdir('.')", {"module"}),
        "through-torch": ("torch.os.listdir('.')", {"module"}),
        "through-pyplot": ("plt.sys.modules", {"module"}),
        "json": ("import json", {"import"}),
        "serialization": ("from torch.serialization import pickle", {"import"}),
        "array-tofile": ("np.zeros(3).tofile('x')", {"files"}),
    },
    "obfuscation": {
        "builtins-getattr": ("ev = getattr(__builtins__, 'ev' + 'al')", {"namespace"}),
        "subclasses": ("for klass in ().__class__.__base__.__subclasses__():\n    pass", {"dunder"}),
        "eval": ("value = eval('1 + 1')", {"dynamic-code"}),
        "exec-compile": ("exec(compile('x = 1', '<string>', 'exec'))", {"dynamic-code"}),
        "dunder-import": ("os = __import__('os')", {"dynamic-code"}),
        "globals": ("globals()['torch'].allclose = print", {"namespace"}),
        "string-built-name": ("def f(x):\n    return getattr(x, '__cla' + 'ss__')", {"getattr", "computed-name"}),
        "string-built-variable": ("def f(x):\n    name = '_' * 2 + 'class' + '_' * 2\n    return getattr(x, name)",
                                  {"computed-name"}),
        "chr-built-name": ("def f(x):\n    name = chr(95) * 2 + 'class' + chr(95) * 2\n    return getattr(x, name)",
                           {"computed-name"}),
        "constant-dunder-name": ("def f(x):\n    return getattr(x, '__globals__')", {"dunder"}),
        "format-string": ("leak = '{0.__globals__}'.format(check_function)", {"dunder"}),
        "getattr-as-value": ("get = getattr\nf = get(torch, 'allclose')", {"getattr"}),
        "type-of-an-instance": ("T = type(torch.zeros(1))\nT.add = print", {"type"}),
        "conditional-shadow": ("if False:\n    eval = print\neval('1')", {"dynamic-code"}),
        "top-level-await": ("await something()\neval('1')", {"dynamic-code"}),
    },
}

ATTEMPTS = [(threat, name, *case) for threat, cases in THREATS.items() for name, case in cases.items()]


@pytest.mark.parametrize("threat", sorted(THREATS))
def test_each_threat_class_has_several_attempts(threat):
    assert len(THREATS[threat]) >= 2


@pytest.mark.parametrize(("threat", "name", "source", "rules"), ATTEMPTS, ids=[f"{a[0]}-{a[1]}" for a in ATTEMPTS])
def test_each_attempt_is_caught_with_a_sensible_message(threat, name, source, rules):
    violations = screen(source)
    assert violations, f"{threat}/{name} screens clean"
    assert {v.rule for v in violations} & rules, explain(violations)
    for v in violations:
        assert v.rule in RULES
        assert v.message.startswith(f"line {v.line}: answers may not"), v.message
        assert 1 <= v.line <= len(source.splitlines())


def test_the_adversarial_grading_cheats_are_all_caught():
    """The cheats tests/test_adversarial.py submits to the real grader."""
    path = ROOT / "tests" / "test_adversarial.py"
    if not path.exists():
        pytest.skip("no tests/test_adversarial.py")
    text = path.read_text()
    start = text.index("CHEATS = {")
    namespace: dict = {}
    exec(text[start:text.index("\n}\n", start) + 3], namespace)
    clean = [name for name, code in namespace["CHEATS"].items() if not screen(code)]
    assert not clean


# --------------------------------------------------------------------------
# What is allowed stays allowed (the edges of the rules)
# --------------------------------------------------------------------------

ALLOWED = {
    "module-class": "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                    "        self._cache = {}\n\n    def forward(self, x):\n        return self._cache.get(0, x)",
    "subclass-a-layer": "class Wide(nn.Linear):\n    pass",
    "property-and-setter": "class M(nn.Module):\n    @property\n    def scale(self):\n        return 2\n\n"
                           "    @scale.setter\n    def scale(self, value):\n        pass",
    "no-grad": "@torch.no_grad()\ndef f(x):\n    return x",
    "dataclass": "from dataclasses import dataclass\n\n@dataclass\nclass Config:\n    lr: float = 0.1\n"
                 "    device: str = 'cpu'",
    "isinstance-tuple": "def f(m):\n    return isinstance(m, (nn.Linear, nn.Embedding))",
    "annotations": "def f(x: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:\n    return x, x",
    "loop-underscore": "for _ in range(3):\n    pass\na, _, b = 'x.y'.partition('.')\nprint(_)",
    "input-as-a-parameter": "def forward(self, input):\n    return input",
    "type-name": "def f(e):\n    return type(e).__name__, e.__class__.__name__",
    "setattr-own-module": "def swap(model, name, layer):\n    setattr(model, name, layer)\n"
                          "    return getattr(model, name)",
    "getattr-f-string": "def head(self, i):\n    return getattr(self, f'head{i}')",
    "global-of-this-cell": "cache = {}\n\ndef f():\n    global cache\n    cache = {1: 2}",
    "main-guard": "if __name__ == '__main__':\n    pass",
    "ipython-display": "from IPython.display import clear_output, display",
    "syntax-error": "def f(:\n    pass",
    "method-mutation": "SOFTMAX_MISTAKES.copy()",
    "plain-format": "text = '{0:.3f} {name}'.format(1.0, name='x')",
    "timing-and-help-magics": "%matplotlib inline\n%timeit -n 10 torch.zeros(3)\nx = torch.ones(2)\nx.sum?",
    "timing-cell-magic": "%%time\nmodel = nn.Linear(2, 2)",
}


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_honest_edges_are_allowed(name):
    assert screen(ALLOWED[name]) == [], explain(screen(ALLOWED[name]))


# --------------------------------------------------------------------------
# Messages name the line
# --------------------------------------------------------------------------


def test_messages_name_the_line_of_the_cell_as_the_student_sees_it():
    source = "\n\nimport math\n\nx = math.pi\nvalue = eval('x')\n%load secret.py\n"
    violations = screen(source)
    assert [(v.line, v.rule) for v in violations] == [(6, "dynamic-code"), (7, "ipython")]
    assert violations[0].message == "line 6: answers may not use eval (code built at run time cannot be checked)"
    assert violations[1].message.startswith("line 7: answers may not use the magic `%load`")


def test_code_a_magic_runs_is_screened_on_its_line():
    violations = screen("x = 1\n%time y = eval('x')\n")
    assert [(v.line, v.rule) for v in violations] == [(2, "dynamic-code")]
    violations = screen("\n%%time\nx = 1\ny = eval('x')\n")
    assert [(v.line, v.rule) for v in violations] == [(4, "dynamic-code")]
    assert violations[0].message.startswith("line 4: answers may not use eval")


def test_explain_lists_every_message():
    violations = screen("import os\nopen('x')")
    text = explain(violations)
    assert text.splitlines()[0].startswith("This cell breaks the course's answer rules")
    assert all(v.message in text for v in violations)
    assert explain([]) == ""
    assert isinstance(violations[0], Violation) and str(violations[0]) == violations[0].message


def test_screen_notebook_and_the_command_line(tmp_path, capsys):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("import os")]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, str(path))
    assert list(screen_notebook(str(path))) == [1]
    assert answer_rules.main([str(path)]) == 1
    assert "line 1: answers may not import `os`" in capsys.readouterr().out


# --------------------------------------------------------------------------
# 3. The self-checks screen the cell that defined what they check
# --------------------------------------------------------------------------

_CELLS = itertools.count(1)


@pytest.fixture
def cell():
    """``cell(source)``: run ``source`` as IPython runs a cell (its text registered in linecache); its namespace."""
    names = []

    def run(source: str) -> dict:
        filename = f"/tmp/ipykernel_0/{next(_CELLS)}.py"
        linecache.cache[filename] = (len(source), None, [line + "\n" for line in source.splitlines()], filename)
        names.append(filename)
        namespace = {"torch": torch, "nn": torch.nn}
        exec(compile(source, filename, "exec"), namespace)
        return namespace

    yield run
    for filename in names:
        linecache.cache.pop(filename, None)


def _softmax_reference(x, dim=-1):
    return torch.softmax(x, dim)


CASES = [{"x": torch.tensor([[1.0, 2.0, 3.0]])}]

HONEST_SOFTMAX = """
def softmax(x, dim=-1):
    e = torch.exp(x - x.max(dim=dim, keepdim=True).values)
    return e / e.sum(dim=dim, keepdim=True)
"""

HOSTILE_SOFTMAX = """
import gc

def softmax(x, dim=-1):
    e = torch.exp(x - x.max(dim=dim, keepdim=True).values)
    return e / e.sum(dim=dim, keepdim=True)
"""


def test_check_function_passes_an_honest_cell(cell):
    check_function(cell(HONEST_SOFTMAX)["softmax"], _softmax_reference, CASES)


def test_check_function_refuses_a_cell_that_breaks_a_rule(cell):
    softmax = cell(HOSTILE_SOFTMAX)["softmax"]  # a right answer, in a cell that imports gc
    with pytest.raises(CheckFailed) as failure:
        check_function(softmax, _softmax_reference, CASES)
    message = str(failure.value)
    assert "line 2: answers may not import `gc`" in message
    assert "the grader will not run this cell and will flag the submission for your instructor" in message.lower()


def test_forbid_reference_refuses_a_cell_that_breaks_a_rule(cell):
    softmax = cell(HOSTILE_SOFTMAX)["softmax"]
    with pytest.raises(CheckFailed, match="answers may not import `gc`"):
        forbid_reference(softmax, ["torch.softmax"], example=CASES[0])


def test_classes_partials_and_methods_are_traced_to_their_cell(cell):
    namespace = cell("class Layer(nn.Module):\n    def forward(self, x):\n        return x\n\n"
                     "def helper(x):\n    return x\n\nvalue = eval('1')\n")
    for obj in (namespace["Layer"], functools.partial(_softmax_reference, namespace["Layer"]),
                namespace["Layer"]().forward, functools.partial(namespace["helper"])):
        with pytest.raises(CheckFailed, match="line 8: answers may not use eval"):
            check_answer_rules(obj)


def test_class_checks_screen_the_class(cell):
    from course_lib.checks.fine_tuning import check_not_reference_class

    namespace = cell("class LoRALinear(nn.Module):\n    def __eq__(self, other):\n        return True\n")
    with pytest.raises(CheckFailed, match="answers may not define the method `__eq__`"):
        check_not_reference_class(namespace["LoRALinear"])


def test_library_code_and_the_notebooks_own_test_cells_are_not_screened(cell):
    check_answer_rules(_softmax_reference, grading.check_close, torch.softmax)  # real files, a builtin
    wrapper = cell("# Self-check: softmax (1 point)\nfrom course_lib.grading import check_function\n\n"
                   "def yours(x):\n    return x\n")["yours"]
    check_answer_rules(wrapper)


def test_a_tensor_subclass_is_not_a_tensor():
    class Agreeable(torch.Tensor):
        pass

    lying = torch.zeros(3).as_subclass(Agreeable)
    with pytest.raises(CheckFailed, match="a subclass of torch.Tensor; return a plain torch.Tensor"):
        check_close(lying, torch.zeros(3))
    with pytest.raises(CheckFailed, match="should be a number"):
        check_close(torch.zeros(()).as_subclass(Agreeable), 0.0)
    check_close(torch.nn.Parameter(torch.zeros(3)), torch.zeros(3))


# --------------------------------------------------------------------------
# 4. check_untampered notices hooks and patches from notebook cells
# --------------------------------------------------------------------------


@pytest.fixture
def shell():
    interactiveshell = pytest.importorskip("IPython.core.interactiveshell")
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    ip = interactiveshell.InteractiveShell.instance(config=config)
    grading.check_untampered()  # a fresh shell, with IPython's own hooks only, passes
    try:
        yield ip
    finally:
        interactiveshell.InteractiveShell.clear_instance()


HOOKS = "def transformer(lines):\n    return lines\n\ndef forget(*args, **kwargs):\n    return None\n"


def test_check_untampered_notices_an_input_transformer(shell, cell):
    transformer = cell(HOOKS)["transformer"]
    shell.input_transformers_cleanup.append(transformer)
    with pytest.raises(CheckFailed, match="input_transformers_cleanup"):
        grading.check_untampered()
    shell.input_transformers_cleanup.remove(transformer)
    grading.check_untampered()


def test_check_untampered_notices_an_event_callback_and_an_exception_handler(shell, cell):
    forget = cell(HOOKS)["forget"]
    shell.events.register("post_run_cell", forget)
    with pytest.raises(CheckFailed, match="post_run_cell"):
        grading.check_untampered()
    shell.events.unregister("post_run_cell", forget)
    grading.check_untampered()
    shell.set_custom_exc((AssertionError,), forget)
    with pytest.raises(CheckFailed, match="custom exception handler"):
        grading.check_untampered()
    shell.set_custom_exc((), None)
    grading.check_untampered()


def test_check_untampered_notices_a_replaced_showtraceback_and_a_magic(shell, cell):
    forget = cell(HOOKS)["forget"]
    shell.register_magic_function(forget, "line", "forget")
    with pytest.raises(CheckFailed, match="line magics"):
        grading.check_untampered()
    del shell.magics_manager.magics["line"]["forget"]
    shell.showtraceback = forget
    with pytest.raises(CheckFailed, match="showtraceback"):
        grading.check_untampered()


def test_check_untampered_notices_a_library_function_replaced_by_a_cell(cell, monkeypatch):
    forget = cell(HOOKS)["forget"]
    for owner, attr in [(torch.nn.Module, "parameters"), (torch.nn.functional, "softmax"),
                        (torch.Tensor, "sum"), (grading, "check_close")]:
        with monkeypatch.context() as patch:
            patch.setattr(owner, attr, forget)
            with pytest.raises(CheckFailed, match=attr):
                grading.check_untampered()
    grading.check_untampered()
