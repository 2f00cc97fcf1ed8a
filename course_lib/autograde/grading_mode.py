"""Grading mode: skip the training experiments, keep every score.

Grading a submission should cost what its graded cells cost. A course
notebook is mostly *experiments* -- training runs, plots, widgets -- whose
results no answer, test or read-only cell looks at; even in FAST mode they
are most of a notebook's execution time. This module

* analyses a notebook's code cells (:func:`analyse`): which names each cell
  binds, which it reads from earlier cells, which objects of earlier cells it
  may change, whether it seeds or draws from the global random number
  generator, whether it changes global settings; and from that which
  ungraded cells the graded cells depend on;
* provides :class:`SkipExperiments`, an nbconvert preprocessor for
  ``nbgrader autograde`` that replaces every code cell tagged ``experiment``
  (and carrying no nbgrader grade / solution / locked flag) by the one-line
  comment :data:`SKIPPED_SOURCE`, so that the kernel never runs it.

Why the scores stay the same
----------------------------

nbgrader scores a test cell by whether it raises. A test cell's outcome
depends only on the state of the kernel when it runs: the names it reads, the
objects behind them, global settings and the global random state. An
``experiment`` cell is, by construction (``python tools/experiments.py
--tag``), a cell that no graded cell depends on through any of these:

* it binds no name that an answer, test or read-only cell -- or an ungraded
  cell those need, transitively -- reads before binding it itself (reads
  inside the bodies of functions and classes count where the function is
  referenced, since that is when they resolve); re-importing a module that an
  earlier running cell imported the same way does not count;
* it changes no object that such a cell uses: attribute or item assignment,
  a method call (other than well-known read-only ones such as ``.item()``) or
  passing the object to a function all count as possible changes, so e.g. a
  cell that trains a model defined elsewhere is a dependency of every later
  graded cell that uses the model;
* it does not seed the global random generator (``torch.manual_seed``,
  ``random.seed``, ``course_lib.setup``...) or draw from it (``torch.randn``
  without ``generator=``, a ``torch.nn`` layer's initialisation, a notebook
  function that does either) before a graded cell that draws from it before
  seeding it itself (a seed inside a function the cell calls counts);
* it changes no global setting (``torch.set_default_dtype``,
  ``torch.set_num_threads``, assignments to module attributes such as
  ``torch.backends...`` or ``plt.rcParams``, ``os.environ``, IPython magics
  such as ``%matplotlib``), and draws no figure before a test or read-only
  cell that calls pyplot or ``course_lib.viz``;
* it uses no IPython magic that may bind names unseen (``%run``...; ``%time``,
  ``%timeit`` and ``%%capture`` are analysed through) and no ``exec`` /
  ``globals()``: such a cell is never tagged;

so skipping it leaves every graded cell with the same inputs. Graded cells
are never touched, whatever their tags.

Limits, by design. Random draws inside library code (a training loop,
``course_lib.pretrained``) are invisible, and so are those of a notebook
function that a cell only hands to a library (``check_function(softmax,
...)``): the library decides when it runs, and course_lib's check helpers
pass explicit generators or seed first. The random example that a cell hands
to ``course_lib.grading.forbid_reference`` cannot decide a verdict (the
answer's result there is thrown away). The course's test cells take their
random inputs from explicit ``torch.Generator`` objects or seed themselves;
``tools/experiments.py --report`` lists the graded cells that draw from the
global generator unseeded, and ``tests/test_grading_mode.py`` plus the
grading round trip check the result by execution. Grading mode also changes
what a *broken* experiment would have done: one that would have crashed the
kernel (ending that notebook's grading) or timed out no longer runs.

The tags come from the instructor's notebook, but a submission is the
student's: an answer cell (or a cell the student added) may read a variable
that only an experiment defines. :class:`SkipExperiments` therefore runs the
same analysis on the submission as handed in and keeps every tagged cell that
a running cell of *that* notebook depends on (``check_dependencies``, on by
default), logging which cell and which name forced it.

What authors must do
--------------------

After adding or changing a code cell in ``solutions/``, run::

    python tools/experiments.py --tag solutions/*/*.ipynb   # then `make release`
    python tools/experiments.py --report                    # what is skipped, what must still run and why

``tests/test_grading_mode.py`` fails when the committed tags differ from what
the analysis computes (for instance when a new test cell starts using an
experiment's variable), naming the cell and the name. A cell that must run
while grading although the analysis does not see why can be kept by giving
it any nbgrader metadata (e.g. making it read-only).

Enable it in ``nbgrader_config.py``, after nbgrader's ``OverwriteCells`` (so
that test and read-only cells are already restored, and their metadata is the
instructor's)::

    c.Autograde.sanitize_preprocessors.append("course_lib.autograde.grading_mode.SkipExperiments")

(or list ``"course_lib.autograde.grading_mode.SkipExperiments"`` after
``"nbgrader.preprocessors.OverwriteCells"`` in a full list)
and switch it off for one run with ``--SkipExperiments.enabled=False``.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

#: The cell tag that marks an experiment.
TAG = "experiment"
#: What a skipped cell's source becomes.
SKIPPED_SOURCE = "# experiment skipped while grading (course_lib.autograde.grading_mode)"
#: Pseudo-names for state that lives outside the notebook's variables.
RNG = "<global random state>"
SETTINGS = "<global settings>"
PYPLOT = "<matplotlib's current figure>"
# Modules that draw into pyplot's current figure: state that test and read-only cells calling them could see.
_PYPLOT_PREFIXES = ("matplotlib.pyplot.", "course_lib.viz.")

# --------------------------------------------------------------------------
# What the analysis knows about libraries
# --------------------------------------------------------------------------

_SEED_CALLS = frozenset({
    "torch.manual_seed", "torch.random.manual_seed", "torch.seed", "torch.random.seed",
    "torch.set_rng_state", "torch.random.set_rng_state", "torch.cuda.manual_seed", "torch.cuda.manual_seed_all",
    "torch.cuda.set_rng_state", "torch.cuda.set_rng_state_all",
    "random.seed", "random.setstate", "numpy.random.seed", "numpy.random.set_state",
    "course_lib.setup", "course_lib.env.setup",
})
_DRAW_CALLS = frozenset({
    "torch.randn", "torch.rand", "torch.randint", "torch.randperm", "torch.randn_like", "torch.rand_like",
    "torch.randint_like", "torch.normal", "torch.bernoulli", "torch.multinomial", "torch.poisson",
    "torch.nn.functional.dropout", "torch.nn.functional.dropout1d", "torch.nn.functional.dropout2d",
    "torch.nn.functional.dropout3d", "torch.nn.functional.alpha_dropout", "torch.nn.functional.gumbel_softmax",
    "torch.utils.data.random_split",
})
_DRAW_PREFIXES = ("random.", "numpy.random.", "torch.nn.init.")
_NOT_DRAWS = frozenset({"random.Random", "random.SystemRandom", "numpy.random.default_rng", "numpy.random.Generator",
                        "numpy.random.RandomState", "numpy.random.PCG64", "numpy.random.SeedSequence"})
_DRAW_METHODS = frozenset({
    "normal_", "uniform_", "random_", "bernoulli_", "exponential_", "cauchy_", "log_normal_", "geometric_",
    "sample", "rsample",
})
_SETTINGS_CALLS = frozenset({
    "torch.set_default_dtype", "torch.set_default_tensor_type", "torch.set_default_device", "torch.set_num_threads",
    "torch.set_num_interop_threads", "torch.set_grad_enabled", "torch.use_deterministic_algorithms",
    "torch.set_deterministic_debug_mode", "torch.set_flush_denormal", "torch.set_float32_matmul_precision",
    "torch.set_printoptions", "torch.set_warn_always", "torch.set_anomaly_enabled",
    "torch.autograd.set_detect_anomaly", "torch.autograd.set_grad_enabled", "torch.autograd.grad_mode.set_grad_enabled",
    "torch._dynamo.config", "numpy.seterr", "numpy.set_printoptions", "warnings.filterwarnings",
    "warnings.simplefilter", "warnings.resetwarnings", "os.chdir", "os.putenv", "os.unsetenv", "sys.setrecursionlimit",
    "importlib.reload", "matplotlib.use", "matplotlib.rc", "matplotlib.pyplot.rc", "matplotlib.style.use",
    "matplotlib.pyplot.style.use",
})
# Calls whose result is thrown away: random draws in their arguments cannot decide a verdict.
# (course_lib.grading.forbid_reference runs the answer once on its example only to watch for shortcuts.)
_VERDICT_FREE_CALLS = frozenset({"course_lib.grading.forbid_reference"})
# Builtins that reach the namespace itself: a cell using them may bind or read anything.
_NAMESPACE_CALLS = frozenset({"exec", "eval", "globals", "locals", "vars", "__import__"})
# Calls that neither change their arguments nor keep them.
_PURE_CALLS = frozenset({
    "print", "len", "repr", "str", "isinstance", "issubclass", "type", "id", "hash", "round", "abs", "format",
    "float", "int", "bool", "complex", "callable", "hasattr", "range", "divmod", "pow", "chr", "ord", "ascii",
    "copy.deepcopy", "copy.copy", "math.sqrt", "math.log", "math.exp", "math.isclose", "math.isfinite",
    "torch.allclose", "torch.equal", "torch.isclose", "torch.tensor", "torch.as_tensor", "torch.stack", "torch.cat",
    "torch.is_tensor", "torch.numel",
})
# Methods that read their object and leave it as it was.
_PURE_METHODS = frozenset({
    "item", "tolist", "numpy", "size", "dim", "ndimension", "numel", "nelement", "element_size", "stride",
    "mean", "sum", "std", "var", "prod", "max", "min", "amax", "amin", "argmax", "argmin", "abs", "exp", "log",
    "sqrt", "norm", "all", "any", "nonzero", "count_nonzero", "isnan", "isinf", "isfinite", "allclose", "equal",
    "eq", "ne", "lt", "le", "gt", "ge", "isclose", "clone", "detach", "cpu", "float", "double", "long", "int",
    "half", "bool", "reshape", "view", "view_as", "flatten", "unflatten", "squeeze", "unsqueeze", "transpose",
    "permute", "expand", "expand_as", "repeat", "repeat_interleave", "split", "chunk", "unfold", "softmax",
    "log_softmax", "cumsum", "cumprod", "argsort", "topk", "t", "contiguous", "type_as", "new_zeros",
    "new_ones", "new_full", "new_tensor", "round", "clamp", "clamp_min", "clamp_max", "pow", "matmul", "dot",
    "outer", "diag", "tril", "triu", "flip", "roll", "gather", "index_select", "masked_fill", "where",
    "keys", "values", "items", "get", "copy", "count", "index", "startswith", "endswith", "join", "format",
    "strip", "lstrip", "rstrip", "splitlines", "lower", "upper", "replace", "find", "rfind",
    "isdigit", "isalpha", "isspace", "encode", "decode", "hex",
    "parameters", "named_parameters", "buffers", "named_buffers", "modules", "named_modules", "children",
    "named_children", "state_dict", "num_parameters", "get_submodule", "get_parameter", "extra_repr",
    "last", "describe",
})
# Calls whose result is a new object, not (part of) an argument.
_FRESH_CALLS = frozenset({"copy.deepcopy", "copy.copy"}) | {
    name for name in _PURE_CALLS if name not in {"type"}
}
_FRESH_METHODS = frozenset({
    "clone", "copy", "item", "tolist", "numpy", "mean", "sum", "std", "var", "max", "min", "norm", "all", "any",
    "float", "double", "long", "int", "half", "bool", "size", "numel", "dim", "format", "join", "encode",
    "decode", "split", "splitlines", "strip", "replace", "lower", "upper", "count", "index", "keys", "values",
    "items",
})
# IPython magics whose code the analysis can read (the rest are opaque: they may do anything).
_CODE_MAGICS = frozenset({"time", "timeit", "capture", "prun"})
# Magics that change the session but bind no variables.
_SETTINGS_MAGICS = frozenset({
    "matplotlib", "config", "load_ext", "reload_ext", "unload_ext", "autoreload", "aimport", "precision", "xmode",
    "pdb", "env", "cd", "pip", "conda", "alias_magic", "colors", "logstart", "logstop", "sx", "system",
})
_BUILTINS = frozenset(dir(builtins)) | {"get_ipython", "display", "__file__"}

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


# --------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------


def nbgrader_flags(cell: Mapping) -> dict:
    return dict((cell.get("metadata") or {}).get("nbgrader") or {})


def cell_kind(cell: Mapping) -> str:
    """'answer', 'manual answer', 'test', 'locked' for nbgrader's cells, '' for the rest."""
    flags = nbgrader_flags(cell)
    if flags.get("solution"):
        return "manual answer" if flags.get("grade") else "answer"
    if flags.get("grade"):
        return "test"
    if flags.get("locked"):
        return "locked"
    return ""


def is_graded(cell: Mapping) -> bool:
    """True for answer, test and read-only cells: they always run, whatever their tags."""
    return bool(cell_kind(cell))


def tags(cell: Mapping) -> list[str]:
    return list((cell.get("metadata") or {}).get("tags") or [])


def is_tagged(cell: Mapping) -> bool:
    return TAG in tags(cell)


def cell_label(cell: Mapping, index: int) -> str:
    """A cell's id when it has one, else its position."""
    return str(cell.get("id") or f"cell {index}")


def _source(cell: Mapping) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


# --------------------------------------------------------------------------
# Analysis of one unit of code (a cell's top level, or one function body)
# --------------------------------------------------------------------------


@dataclass
class FunctionSummary:
    """What calling a function defined in the notebook may do."""

    reads: dict[str, int] = field(default_factory=dict)  # global name -> line
    changes: dict[str, int] = field(default_factory=dict)  # global names whose objects (or bindings) it may change
    events: list[tuple] = field(default_factory=list)  # ("seed" | "draw", definite) or ("ref", name, definite)
    settings: list[str] = field(default_factory=list)  # global settings it may change

    def merge(self, other: FunctionSummary) -> None:
        for name, line in other.reads.items():
            self.reads.setdefault(name, line)
        for name, line in other.changes.items():
            self.changes.setdefault(name, line)
        self.events.extend(other.events)
        self.settings.extend(other.settings)


@dataclass
class CellInfo:
    """One code cell as the dependency analysis sees it."""

    index: int
    label: str
    kind: str  # '' for ungraded cells
    tagged: bool
    binds: set[str] = field(default_factory=set)  # names it certainly (re)binds
    changes: dict[str, str] = field(default_factory=dict)  # names it may rebind or whose object it may change -> how
    reads: dict[str, str] = field(default_factory=dict)  # names it reads from earlier cells -> how
    imports: dict[str, str] = field(default_factory=dict)  # name -> what the import binds it to
    functions: dict[str, FunctionSummary] = field(default_factory=dict)
    events: list[tuple] = field(default_factory=list)
    settings: list[str] = field(default_factory=list)
    opaque: str = ""  # why the analysis cannot see what the cell does ('' when it can)
    error: str = ""  # a syntax error: the cell runs nothing at all
    refs: list[tuple[str, frozenset, int]] = field(default_factory=list)  # (name, names bound before, line)

    @property
    def defines(self) -> set[str]:
        return set(self.binds) | set(self.changes)


def _dotted(node: ast.AST) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return parts[::-1]
    return None


def _root(node: ast.AST) -> str | None:
    """The variable an expression like ``a``, ``a.b``, ``a[0].c`` or ``*a`` is part of."""
    while True:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
            node = node.value
        else:
            return None


def _target_names(target: ast.AST) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [name for element in target.elts for name in _target_names(element)]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return []


def _scope_locals(node: ast.AST) -> tuple[set[str], set[str]]:
    """(names local to a function / lambda / comprehension / class body, names it declares global or nonlocal)."""
    local: set[str] = set()
    declared: set[str] = set()
    if isinstance(node, _COMPREHENSIONS):
        for generator in node.generators:
            local.update(_target_names(generator.target))
        return local, declared
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        args = node.args
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if arg is not None:
                local.add(arg.arg)
    body = node.body if isinstance(node.body, list) else [node.body]

    def collect(child: ast.AST) -> None:
        if isinstance(child, (ast.Global, ast.Nonlocal)):
            declared.update(child.names)
        elif isinstance(child, ast.Name) and isinstance(child.ctx, (ast.Store, ast.Del)):
            local.add(child.id)
        elif isinstance(child, (ast.Import, ast.ImportFrom)):
            local.update((alias.asname or alias.name).split(".")[0] for alias in child.names)
        elif isinstance(child, ast.ExceptHandler) and child.name:
            local.add(child.name)
        elif isinstance(child, (ast.MatchAs, ast.MatchStar)) and child.name:
            local.add(child.name)
        elif isinstance(child, ast.MatchMapping) and child.rest:
            local.add(child.rest)
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            local.add(child.name)
            return  # its body is a scope of its own
        if isinstance(child, (ast.Lambda, *_COMPREHENSIONS)):
            return
        for grandchild in ast.iter_child_nodes(child):
            collect(grandchild)

    for statement in body:
        collect(statement)
    return local - declared, declared


class _Unit:
    """Walks one cell's top level (``function=None``) or one function body, in execution order."""

    def __init__(self, context: _Context, function: ast.AST | None = None) -> None:
        self.context = context
        self.function = function
        self.reads: dict[str, tuple[int, str]] = {}
        self.changes: dict[str, tuple[int, str]] = {}
        self.binds: set[str] = set()  # certainly bound so far (top level only)
        self.maybe: set[str] = set()  # maybe bound (top level only)
        self.imports: dict[str, str] = {}
        self.events: list[tuple] = []
        self.settings: list[str] = []
        self.functions: dict[str, FunctionSummary] = {}
        self.refs: list[tuple[str, frozenset, int]] = []
        self.aliases: dict[str, set[str]] = {}  # local name -> outside names its object may belong to
        self.depth = 0  # > 0 inside a branch or loop: seeds there are not certain
        if function is None:
            self.local: set[str] = set()
            self.declared: set[str] = set()
        else:
            self.local, self.declared = _scope_locals(function)

    # -- names ------------------------------------------------------------

    def is_local(self, name: str) -> bool:
        return name in self.binds if self.function is None else name in self.local

    def is_local_value(self, name: str) -> bool:
        return self.function is not None and name in self.local

    def resolve(self, node: ast.AST) -> str | None:
        """'np.random.seed' for ``np.random.seed`` when ``import numpy as np``; None for values."""
        parts = _dotted(node)
        if not parts:
            return None
        head = parts[0]
        if self.is_local_value(head):
            return None
        if head in self.context.imported:
            return ".".join([self.context.imported[head], *parts[1:]])
        if head in _BUILTINS and not self.context.is_notebook_name(head):
            return ".".join(parts)
        return None

    def read(self, name: str, line: int, how: str) -> None:
        if self.is_local(name) or name in _BUILTINS and not self.context.is_notebook_name(name):
            return
        self.reads.setdefault(name, (line, how))

    def ref(self, name: str, line: int, called: bool = False) -> None:
        """A load of ``name``: if it is a function of the notebook, it may run now (``called``) or later.

        A function handed to a library (``check_function(softmax, ...)``) runs when the library calls it:
        its reads and changes count, but its random draws are the library's business (course_lib's checks
        seed or pass generators), so they count as touching the random state, not as reading it.
        """
        if self.context.is_function(name):
            self.refs.append((name, frozenset(self.binds) if self.function is None else frozenset(), line))
            self.events.append(("ref", name, self.depth == 0, called))

    def change(self, name: str | None, line: int, how: str) -> None:
        """The object behind ``name`` (or its binding) may change."""
        if name is None:
            return
        if self.function is None:
            if name in self.binds:
                for outer in self.aliases.get(name, ()):
                    self.changes.setdefault(outer, (line, f"{how} (through `{name}`)"))
                return
            if name in self.context.imported and name not in self.maybe:
                self.settings.append(f"line {line}: {how}")
                return
            if name in _BUILTINS and not self.context.is_notebook_name(name):
                return
            self.changes.setdefault(name, (line, how))
            return
        if name in self.local:
            for outer in self.aliases.get(name, ()):
                self.changes.setdefault(outer, (line, f"{how} (through `{name}`)"))
            return
        if name in self.context.imported:
            self.settings.append(f"line {line}: {how}")
            return
        if name in _BUILTINS and not self.context.is_notebook_name(name):
            return
        self.changes.setdefault(name, (line, how))

    def alias_roots(self, node: ast.AST) -> set[str]:
        """Outside names whose objects the value of ``node`` may be (part of)."""
        if isinstance(node, ast.Name):
            if self.is_local(node.id):
                return set(self.aliases.get(node.id, ()))
            if node.id in self.context.imported or node.id in _BUILTINS or self.context.is_function(node.id):
                return set()
            return {node.id}
        if isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
            return self.alias_roots(node.value)
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return set().union(*(self.alias_roots(e) for e in node.elts)) if node.elts else set()
        if isinstance(node, ast.Dict):
            return set().union(*(self.alias_roots(v) for v in node.values)) if node.values else set()
        if isinstance(node, ast.IfExp):
            return self.alias_roots(node.body) | self.alias_roots(node.orelse)
        if isinstance(node, ast.NamedExpr):
            return self.alias_roots(node.value)
        if isinstance(node, ast.Call):
            dotted = self.resolve(node.func)
            if dotted in _FRESH_CALLS:
                return set()
            if isinstance(node.func, ast.Attribute) and node.func.attr in _FRESH_METHODS:
                return set()
            roots = set()
            if isinstance(node.func, ast.Attribute):
                roots |= self.alias_roots(node.func.value)
            for arg in [*node.args, *[k.value for k in node.keywords]]:
                roots |= self.alias_roots(arg)
            return roots
        return set()

    def bind(self, names: Iterable[str], value: ast.AST | None, certain: bool, line: int) -> None:
        roots = self.alias_roots(value) if value is not None else set()
        for name in names:
            if self.function is not None:
                if name in self.declared:
                    self.changes.setdefault(name, (line, "assigned as a global"))
                elif roots:
                    self.aliases[name] = self.aliases.get(name, set()) | roots
                continue
            if roots:
                self.aliases[name] = (self.aliases.get(name, set()) if not certain else set()) | roots
            elif certain:
                self.aliases.pop(name, None)
            self.imports.pop(name, None)
            self.binds.add(name)  # bound for what follows in this block
            if not (certain and self.depth == 0):
                self.maybe.add(name)
                self.changes.setdefault(name, (line, "maybe bound"))

    # -- expressions --------------------------------------------------------

    def expr(self, node: ast.AST | None) -> None:
        if node is None:
            return
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                self.read(node.id, node.lineno, "read")
                self.ref(node.id, node.lineno)
                if node.id in _NAMESPACE_CALLS and not self.context.is_notebook_name(node.id):
                    self.context.namespace.append(f"line {node.lineno}: {node.id}")
            return
        if isinstance(node, ast.Call):
            self.call(node)
            return
        if isinstance(node, ast.NamedExpr):
            self.expr(node.value)
            self.bind([node.target.id], node.value, certain=False, line=node.lineno)
            return
        if isinstance(node, (ast.Lambda, *_COMPREHENSIONS)):
            self.nested(node)
            return
        for child in ast.iter_child_nodes(node):
            self.expr(child)

    def nested(self, node: ast.AST) -> FunctionSummary:
        """A lambda or comprehension: analysed as a function that may run now."""
        unit = _Unit(self.context, node)
        unit.depth = 1
        if isinstance(node, ast.Lambda):
            for default in [*node.args.defaults, *[d for d in node.args.kw_defaults if d is not None]]:
                self.expr(default)
            unit.expr(node.body)
        else:
            self.expr(node.generators[0].iter)
            for generator in node.generators:
                if generator is not node.generators[0]:
                    unit.expr(generator.iter)
                for test in generator.ifs:
                    unit.expr(test)
            if isinstance(node, ast.DictComp):
                unit.expr(node.key)
                unit.expr(node.value)
            else:
                unit.expr(node.elt)
        summary = unit.summary()
        self.absorb(summary, node.lineno, runs_now=not isinstance(node, ast.Lambda))
        return summary

    def absorb(self, summary: FunctionSummary, line: int, runs_now: bool) -> None:
        """Take a nested scope's reads, changes and events as this unit's own (it may run later: a callback)."""
        for name, how_line in summary.reads.items():
            self.read(name, how_line, "read in a nested function or comprehension")
        for name, how_line in summary.changes.items():
            self.change(name, how_line, "changed in a nested function or comprehension")
        for event in summary.events:
            if event[0] == "ref":
                if self.function is None:
                    self.refs.append((event[1], frozenset(self.binds), line))
                self.events.append(("ref", event[1], False, runs_now and event[3]))
            elif runs_now or event[0] == "touch":
                self.events.append((event[0], False))
            else:
                self.events.append(("touch", False))
        self.settings.extend(summary.settings)

    def call(self, node: ast.Call) -> None:
        func = node.func
        line = node.lineno
        dotted = self.resolve(func)
        method = func.attr if isinstance(func, ast.Attribute) else None
        # the callee expression (without registering a call of a notebook function yet)
        if isinstance(func, ast.Name):
            self.read(func.id, line, "called")
        else:
            self.expr(func)
        first_event = len(self.events)
        for arg in [*node.args, *[k.value for k in node.keywords]]:
            self.expr(arg)
        if dotted in _VERDICT_FREE_CALLS:
            self.events[first_event:] = [
                ("ref", e[1], e[2], False) if e[0] == "ref" else ("touch", False) if e[0] == "draw" else e
                for e in self.events[first_event:]
            ]
        if dotted in ("setattr", "delattr") and node.args:
            self.change(_root(node.args[0]), line, f"{dotted} on it")
        magic = self.ipython_call(node)
        if magic is not None:
            return
        keywords = {k.arg for k in node.keywords}
        if dotted is not None:
            if dotted in _SEED_CALLS or dotted.endswith(".manual_seed_all"):
                self.events.append(("seed", self.depth == 0))
            elif ((dotted in _DRAW_CALLS or dotted.startswith(_DRAW_PREFIXES)) and dotted not in _NOT_DRAWS
                  and "generator" not in keywords):
                self.events.append(("draw", self.depth == 0))
            elif dotted.startswith("torch.nn.") and dotted.split(".")[-1][:1].isupper():
                self.events.append(("draw", self.depth == 0))  # a layer's initialisation draws its weights
            if dotted.startswith(_PYPLOT_PREFIXES):
                self.read(PYPLOT, line, f"calls {dotted}")
                self.change(PYPLOT, line, f"calls {dotted}")
            if (dotted in _SETTINGS_CALLS or ".rcParams" in dotted
                    or any(dotted.startswith(s + ".") for s in ("os.environ", "sys.path", "sys.modules"))):
                self.settings.append(f"line {line}: calls {dotted}")
        elif method is not None:
            owner = _root(func.value)
            if method in _DRAW_METHODS and "generator" not in keywords:
                self.events.append(("draw", self.depth == 0))
            if owner is not None and method not in _PURE_METHODS and not self.context.is_function(owner):
                self.change(owner, line, f"`.{method}(...)` called on it")
        # arguments handed to anything but a pure function may be changed (or kept and changed later)
        if dotted not in _PURE_CALLS and method not in ("append", "extend", "add", "setdefault", "update", "insert"):
            for arg in [*node.args, *[k.value for k in node.keywords]]:
                name = _root(arg)
                if name is not None and not self.context.is_function(name) and name not in _BUILTINS:
                    callee = dotted or (".".join(_dotted(func) or []) or "a function")
                    if self.is_local(name):
                        self.change(name, line, f"passed to {callee}")
                    elif name not in self.context.imported:
                        self.change(name, line, f"passed to {callee}")
        if isinstance(func, ast.Name):
            self.ref(func.id, line, called=True)
            if func.id in _NAMESPACE_CALLS and not self.context.is_notebook_name(func.id):
                self.context.namespace.append(f"line {line}: {func.id}()")

    def ipython_call(self, node: ast.Call) -> str | None:
        """``get_ipython().<method>(...)``: magics and shell escapes."""
        func = node.func
        if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Call)
                and isinstance(func.value.func, ast.Name) and func.value.func.id == "get_ipython"):
            return None
        magic = ""
        if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            magic = node.args[0].value.lstrip("%").split()[0] if node.args[0].value.strip("% ") else ""
        what = f"line {node.lineno}: IPython {func.attr}({magic!r})" if magic else f"line {node.lineno}: IPython"
        if func.attr in ("system", "getoutput") or magic in _SETTINGS_MAGICS:
            self.settings.append(what)
        else:
            self.context.opaque.append(what)
        return magic

    # -- statements -----------------------------------------------------------

    def block(self, statements: Sequence[ast.stmt]) -> None:
        for statement in statements:
            self.statement(statement)

    def branch(self, *blocks: Sequence[ast.stmt]) -> None:
        """Blocks of which any (or none) may run: what they bind is only maybe bound afterwards."""
        before = set(self.binds)
        self.depth += 1
        for statements in blocks:
            self.binds = set(before)
            self.block(statements)
        self.depth -= 1
        self.binds = before

    def statement(self, node: ast.stmt) -> None:
        line = getattr(node, "lineno", 0)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for expr in node.decorator_list:
                self.expr(expr)
            for default in [*node.args.defaults, *[d for d in node.args.kw_defaults if d is not None]]:
                self.expr(default)
            for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs, node.args.vararg,
                        node.args.kwarg]:
                if arg is not None and arg.annotation is not None:
                    self.expr(arg.annotation)
            if node.returns is not None:
                self.expr(node.returns)
            summary = self.function_summary(node)
            self.define_function(node.name, summary, line)
            return
        if isinstance(node, ast.ClassDef):
            for expr in [*node.decorator_list, *node.bases, *[k.value for k in node.keywords]]:
                self.expr(expr)
            summary = FunctionSummary()
            body_unit = _Unit(self.context, node)
            body_unit.local, body_unit.declared = _scope_locals(node)
            for statement in node.body:
                if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    for expr in statement.decorator_list:
                        body_unit.expr(expr)
                    summary.merge(self.function_summary(statement))
                else:
                    body_unit.statement(statement)
            self.absorb(body_unit.summary(), line, runs_now=True)  # the class body runs now
            self.define_function(node.name, summary, line)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    self.context.opaque.append(f"line {line}: `from {node.module} import *`")
                    continue
                if isinstance(node, ast.Import):
                    name = alias.asname or alias.name.split(".")[0]
                    target = f"module {alias.name if alias.asname else name}"
                else:
                    name = alias.asname or alias.name
                    target = f"from {'.' * node.level}{node.module or ''} import {alias.name}"
                self.bind([name], None, certain=True, line=line)
                if self.function is None and self.depth == 0:
                    self.imports[name] = target
            return
        if isinstance(node, ast.Assign):
            self.expr(node.value)
            for target in node.targets:
                self.assign(target, node.value, line)
            return
        if isinstance(node, ast.AnnAssign):
            self.expr(node.value)
            if node.value is not None:
                self.assign(node.target, node.value, line)
            return
        if isinstance(node, ast.AugAssign):
            self.expr(node.value)
            if isinstance(node.target, ast.Name):
                self.read(node.target.id, line, "updated in place")
                self.change(node.target.id, line, "updated in place")  # for a local: what it may alias
                if self.function is not None and node.target.id in self.declared:
                    self.changes.setdefault(node.target.id, (line, "updated as a global"))
            else:
                self.expr(node.target.value)
                self.change(_root(node.target), line, "an attribute or item updated in place")
            return
        if isinstance(node, ast.Delete):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    self.bind([target.id], None, certain=True, line=line)
                else:
                    self.expr(target.value)
                    self.change(_root(target), line, "an attribute or item deleted")
            return
        if isinstance(node, (ast.For, ast.AsyncFor)):
            self.expr(node.iter)
            if isinstance(node.iter, (ast.Name, ast.Attribute, ast.Subscript)):
                self.change(_root(node.iter), line, "iterated over (an iterator is used up)")
            self.depth += 1
            before = set(self.binds)
            self.bind(_target_names(node.target), node.iter, certain=False, line=line)
            self.assign_parts(node.target, line)
            self.depth -= 1
            self.branch(node.body, node.orelse)
            self.binds = before
            return
        if isinstance(node, ast.While):
            self.expr(node.test)
            self.branch(node.body, node.orelse)
            return
        if isinstance(node, ast.If):
            self.expr(node.test)
            self.branch(node.body, node.orelse)
            return
        if isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                self.expr(item.context_expr)
                if item.optional_vars is not None:
                    self.assign(item.optional_vars, item.context_expr, line)
            self.block(node.body)
            return
        if isinstance(node, (ast.Try, getattr(ast, "TryStar", ast.Try))):
            self.branch(node.body, *[h.body for h in node.handlers], node.orelse)
            for handler in node.handlers:
                self.expr(handler.type)
            self.block(node.finalbody)
            return
        if isinstance(node, ast.Match):
            self.expr(node.subject)
            self.branch(*[case.body for case in node.cases])
            return
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            return
        for child in ast.iter_child_nodes(node):
            self.expr(child)

    def assign(self, target: ast.AST, value: ast.AST | None, line: int) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            elements = value.elts if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(
                target.elts) else [value] * len(target.elts)
            for sub, sub_value in zip(target.elts, elements):
                self.assign(sub, sub_value, line)
            return
        if isinstance(target, ast.Starred):
            self.assign(target.value, value, line)
            return
        if isinstance(target, ast.Name):
            self.bind([target.id], value, certain=True, line=line)
            return
        self.assign_parts(target, line)

    def assign_parts(self, target: ast.AST, line: int) -> None:
        """An attribute or item target: reads its object and may change it."""
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self.assign_parts(element, line)
            return
        if isinstance(target, ast.Starred):
            self.assign_parts(target.value, line)
            return
        if isinstance(target, (ast.Attribute, ast.Subscript)):
            self.expr(target.value)
            if isinstance(target, ast.Subscript):
                self.expr(target.slice)
            root = _root(target)
            owner = target
            while isinstance(owner, ast.Subscript):
                owner = owner.value
            dotted = self.resolve(owner)
            if dotted is not None and (dotted.startswith(("os.environ", "sys.")) or root in self.context.imported):
                self.settings.append(f"line {line}: assigns {dotted}")
            else:
                self.change(root, line, "an attribute or item assigned")

    # -- functions ----------------------------------------------------------

    def function_summary(self, node: ast.AST) -> FunctionSummary:
        unit = _Unit(self.context, node)
        unit.block(node.body)
        return unit.summary()

    def define_function(self, name: str, summary: FunctionSummary, line: int) -> None:
        if self.function is None:
            self.functions[name] = summary
            self.bind([name], None, certain=True, line=line)
        else:  # a nested function: what it may do counts for the enclosing one
            self.absorb(summary, line, runs_now=True)
            self.bind([name], None, certain=True, line=line)

    def summary(self) -> FunctionSummary:
        return FunctionSummary(
            reads={name: line for name, (line, _) in self.reads.items()},
            changes={name: line for name, (line, _) in self.changes.items() if name not in self.local},
            events=list(self.events),
            settings=list(self.settings),
        )


class _Context:
    """Notebook-wide facts every unit needs: imported names and the notebook's functions."""

    def __init__(self, trees: Sequence[ast.Module | None]) -> None:
        self.imported: dict[str, str] = {}
        self.function_names: set[str] = set()
        self.value_names: set[str] = set()
        self.opaque: list[str] = []
        self.namespace: list[str] = []
        conflicting: set[str] = set()
        for tree in trees:
            if tree is None:
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        name = alias.asname or alias.name.split(".")[0]
                        self._import(name, alias.name if alias.asname else name, conflicting)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    for alias in node.names:
                        if alias.name != "*":
                            self._import(alias.asname or alias.name, f"{node.module}.{alias.name}", conflicting)
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    self.function_names.add(node.name)
                elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    self.value_names.add(node.id)
        for name in conflicting | (self.value_names & set(self.imported)):
            self.imported.pop(name, None)

    def _import(self, name: str, target: str, conflicting: set[str]) -> None:
        if self.imported.get(name, target) != target:
            conflicting.add(name)
        self.imported.setdefault(name, target)

    def is_function(self, name: str) -> bool:
        return name in self.function_names

    def is_notebook_name(self, name: str) -> bool:
        return name in self.function_names or name in self.value_names or name in self.imported


def _parse(source: str) -> tuple[ast.Module | None, str]:
    """A cell's source, IPython syntax included, as a Python AST; (None, error) for a syntax error."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        code = TransformerManager().transform_cell(source)
        tree = ast.parse(code)
    except (SyntaxError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return _unwrap_magics(tree), ""


def _unwrap_magics(tree: ast.Module) -> ast.Module:
    """``%time stmt``, ``%%capture`` and friends run ordinary code: analyse that code instead."""
    body: list[ast.stmt] = []
    for statement in tree.body:
        call = statement.value if isinstance(statement, ast.Expr) else None
        inner = None
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and isinstance(call.func.value, ast.Call) and isinstance(call.func.value.func, ast.Name)
                and call.func.value.func.id == "get_ipython"
                and call.func.attr in ("run_line_magic", "run_cell_magic")
                and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in call.args)):
            magic = call.args[0].value.lstrip("%")
            code = call.args[-1].value if call.func.attr == "run_cell_magic" else call.args[1].value
            if magic in _CODE_MAGICS and (call.func.attr == "run_cell_magic" or magic in ("time", "timeit", "prun")):
                try:
                    inner = _parse(code)[0]
                except RecursionError:
                    inner = None
        body.extend(inner.body if inner is not None else [statement])
    tree.body = body
    return tree


def _analyse_cell(context: _Context, tree: ast.Module | None, info: CellInfo) -> None:
    if tree is None:
        return
    context.opaque = []
    context.namespace = []
    unit = _Unit(context)
    unit.block(tree.body)
    info.binds = set(unit.binds)
    info.changes = {name: how for name, (_, how) in unit.changes.items() if name not in unit.binds}
    info.reads = {name: how for name, (_, how) in unit.reads.items()}
    info.imports = dict(unit.imports)
    info.functions = dict(unit.functions)
    info.events = list(unit.events)
    info.settings = list(unit.settings)
    info.refs = list(unit.refs)
    if not info.kind:  # an ungraded cell that reaches the namespace itself may bind anything
        context.opaque.extend(context.namespace)
    if context.opaque:
        info.opaque = "; ".join(context.opaque)


# --------------------------------------------------------------------------
# The notebook: function summaries, random state, dependencies
# --------------------------------------------------------------------------


@dataclass
class Reason:
    """Why a cell must run: ``user`` (a cell label) needs ``name`` from it."""

    user: str
    name: str
    how: str = ""

    def __str__(self) -> str:
        what = {RNG: "the global random state", SETTINGS: "global settings", PYPLOT: "matplotlib's current figure"
                }.get(self.name, f"`{self.name}`")
        return f"{self.user} needs {what}" + (f" ({self.how})" if self.how else "")


@dataclass
class Analysis:
    """The result of :func:`analyse` for one notebook."""

    cells: list[CellInfo]  # code cells only, in order
    needed: dict[int, list[Reason]]  # index -> why, for every candidate cell that must run
    candidates: set[int]  # indexes of the cells that could be skipped
    rng: dict[int, tuple[bool, str]] = field(default_factory=dict)  # index -> (reads it, 'seeds'/'touches'/'')

    def by_index(self, index: int) -> CellInfo:
        return next(cell for cell in self.cells if cell.index == index)

    @property
    def experiments(self) -> list[CellInfo]:
        """Cells that no running cell depends on: these get the ``experiment`` tag."""
        return [cell for cell in self.cells if cell.index in self.candidates and cell.index not in self.needed]

    @property
    def must_run(self) -> list[tuple[CellInfo, list[Reason]]]:
        """Ungraded cells that must still run, with the reasons."""
        return [(cell, self.needed[cell.index]) for cell in self.cells if cell.index in self.needed]

    def reads_rng(self, cell: CellInfo) -> bool:
        """Whether the cell draws from the global random generator before seeding it."""
        return self.rng.get(cell.index, (False, ""))[0]


def _flatten(events: Sequence[tuple], functions: Mapping[str, list[FunctionSummary]], definite: bool = True,
             stack: tuple[str, ...] = ()) -> list[tuple[str, bool]]:
    """A unit's random-state events with the notebook functions it runs expanded, in order.

    Events: ``("seed" | "draw" | "touch", definite)`` and ``("ref", name, definite, called)``; a function that
    is only handed on (``called`` false) contributes its draws as touches.
    """
    flat: list[tuple[str, bool]] = []
    for event in events:
        if event[0] == "ref":
            name = event[1]
            if name in stack or len(stack) > 20:
                continue
            for summary in functions.get(name, []):
                inner = _flatten(summary.events, functions, definite and event[2], (*stack, name))
                flat.extend(inner if event[3] else [("touch", False) for kind, _ in inner if kind != "touch"]
                            + [e for e in inner if e[0] == "touch"])
        else:
            flat.append((event[0], definite and event[1]))
    return flat


def _rng_role(flat: Sequence[tuple[str, bool]]) -> tuple[bool, str]:
    """(draws before it certainly seeds, 'seeds' | 'touches' | '')."""
    reads = False
    seeded = False
    touched = False
    for kind, definite in flat:
        touched = True
        if kind == "seed" and definite:
            seeded = True
        elif kind == "draw" and not seeded:
            reads = True
    return reads, "seeds" if seeded else ("touches" if touched else "")


def _closure(name: str, functions: Mapping[str, list[FunctionSummary]], seen: set[str] | None = None
             ) -> FunctionSummary:
    """Everything calling ``name`` may read or change, through the notebook functions it calls."""
    seen = set() if seen is None else seen
    total = FunctionSummary()
    if name in seen:
        return total
    seen.add(name)
    for summary in functions.get(name, []):
        total.reads.update({k: v for k, v in summary.reads.items() if k not in total.reads})
        total.changes.update({k: v for k, v in summary.changes.items() if k not in total.changes})
        total.settings.extend(summary.settings)
        for called in list(summary.reads):
            if called in functions:
                total.merge(_closure(called, functions, seen))
    return total


def analyse(cells: Sequence[Mapping], roots: str = "graded") -> Analysis:
    """The dependency analysis of one notebook's cells.

    ``roots="graded"`` (authoring): the answer, test and read-only cells always
    run; every other code cell is a candidate for the ``experiment`` tag.
    ``roots="untagged"`` (grading a submission): every cell runs except the
    ``experiment``-tagged ungraded ones, which are the candidates.
    """
    code = [(index, cell) for index, cell in enumerate(cells) if cell.get("cell_type") == "code"]
    parsed = [_parse(_source(cell)) for _, cell in code]
    context = _Context([tree for tree, _ in parsed])
    infos: list[CellInfo] = []
    for (index, cell), (tree, error) in zip(code, parsed):
        info = CellInfo(index=index, label=cell_label(cell, index), kind=cell_kind(cell), tagged=is_tagged(cell),
                        error=error)
        _analyse_cell(context, tree, info)
        infos.append(info)

    functions: dict[str, list[FunctionSummary]] = {}
    for info in infos:
        for name, summary in info.functions.items():
            functions.setdefault(name, []).append(summary)
    closures = {name: _closure(name, functions) for name in functions}

    # What each cell may do once the notebook functions it references are taken into account.
    rng: dict[int, tuple[bool, str]] = {}
    for info in infos:
        for name, bound, _line in info.refs:
            closure = closures.get(name)
            if closure is None:
                continue
            for read in closure.reads:
                if read not in bound and read not in info.reads and read != name:
                    if not (read in _BUILTINS and not context.is_notebook_name(read)):
                        info.reads[read] = f"read when `{name}` runs"
            for changed in closure.changes:
                if changed not in info.binds or changed in info.reads:
                    info.changes.setdefault(changed, f"changed when `{name}` runs")
            info.settings.extend(f"when `{name}` runs: {s}" for s in closure.settings)
        if info.kind not in ("test", "locked"):  # only the instructor's fixed cells could look at a figure
            info.reads.pop(PYPLOT, None)
        reads_rng, role = _rng_role(_flatten(info.events, functions))
        rng[info.index] = (reads_rng, role)
        if reads_rng:
            info.reads.setdefault(RNG, "draws from it before seeding it")
        if role == "seeds":
            info.binds.add(RNG)
        elif role == "touches":
            info.changes.setdefault(RNG, "draws from it")
        if info.settings:
            info.changes.setdefault(SETTINGS, info.settings[0])

    if roots == "graded":
        candidates = {info.index for info in infos if not info.kind}
    elif roots == "untagged":
        candidates = {info.index for info in infos if not info.kind and info.tagged}
    else:
        raise ValueError(f"roots must be 'graded' or 'untagged', got {roots!r}")

    needed: dict[int, list[Reason]] = {}
    position = {info.index: number for number, info in enumerate(infos)}
    queue = [info for info in infos if info.index not in candidates and not info.error]
    done: set[int] = set()
    while queue:
        user = queue.pop()
        if user.index in done:
            continue
        done.add(user.index)
        wanted = dict(user.reads)
        wanted.setdefault(SETTINGS, "")
        if user.opaque:
            wanted = {name: "an opaque cell may read anything" for info in infos for name in info.defines}
            wanted.setdefault(SETTINGS, "")
        for name, how in wanted.items():
            for provider in _providers(infos, position[user.index], name, candidates):
                if provider.index in candidates:
                    reasons = needed.setdefault(provider.index, [])
                    if len(reasons) < 50 and not any(r.user == user.label and r.name == name for r in reasons):
                        reasons.append(Reason(user.label, name, how))
                    if provider.index not in done:
                        queue.append(provider)
    return Analysis(cells=infos, needed=needed, candidates=candidates, rng=rng)


def _providers(infos: Sequence[CellInfo], before: int, name: str, candidates: set[int]) -> list[CellInfo]:
    """The cells before position ``before`` whose effect on ``name`` the cell there can see.

    Walking back: every cell that may change ``name`` counts, up to the last one that certainly binds it. An
    import in a skippable cell is redundant when an earlier cell imports the same thing and nothing changes
    the name in between.
    """
    found: list[CellInfo] = []
    pending: CellInfo | None = None  # a skippable import, in case an earlier cell binds the name the same way
    for info in reversed(infos[:before]):
        if info.error:
            continue
        if info.opaque:
            found.append(info)
            continue
        if name in info.binds:
            target = info.imports.get(name)
            if pending is not None:
                if target is not None and target == pending.imports.get(name):
                    if info.index not in candidates:
                        return [*found, info]
                    pending = info
                    continue
                return [*found, pending]
            if target is not None and info.index in candidates:
                pending = info
                continue
            return [*found, info]
        if name in info.changes:
            if pending is not None:
                return [*found, pending]
            found.append(info)
    return [*found, pending] if pending is not None else found


def undeclared_dependencies(cells: Sequence[Mapping]) -> list[str]:
    """Messages for every tag that differs from what the analysis computes, naming the cell and the name."""
    analysis = analyse(cells)
    problems = []
    wanted = {info.index for info in analysis.experiments}
    for info in analysis.cells:
        if info.tagged and info.index not in wanted:
            if info.kind:
                continue  # tags on graded cells are harmless: they are never skipped
            reasons = analysis.needed.get(info.index, [])
            why = "; ".join(str(r) for r in reasons[:3]) or info.opaque or "it is not a candidate"
            problems.append(f"cell {info.label} is tagged {TAG!r} but must run while grading: {why}")
        elif not info.tagged and info.index in wanted:
            problems.append(f"cell {info.label} is an experiment (no graded cell depends on it) but is not tagged "
                            f"{TAG!r}")
    return problems


# --------------------------------------------------------------------------
# The preprocessor
# --------------------------------------------------------------------------


class SkipExperiments(Preprocessor):
    """Replace each ungraded ``experiment``-tagged code cell by a comment, so grading does not run it.

    Answer, test and read-only cells are never touched, whatever their tags.
    With ``check_dependencies`` (the default) a tagged cell that a running
    cell of this very submission depends on (say, a student's answer cell
    that reads an experiment's variable) is kept and the reason logged.
    """

    enabled = Bool(True, help="Skip the experiment cells while grading").tag(config=True)
    check_dependencies = Bool(
        True, help="Keep a tagged cell that a running cell of the submission depends on"
    ).tag(config=True)

    def preprocess(self, nb: Any, resources: dict) -> tuple[Any, dict]:
        keep: dict[int, list[Reason]] = {}
        if self.check_dependencies:
            try:
                keep = analyse(nb.cells, roots="untagged").needed
            except Exception as exc:  # never let the analysis stop a batch: then nothing is skipped
                self.log.warning("grading mode: could not analyse the notebook (%s); running every cell", exc)
                return nb, resources
        skipped = kept = 0
        for index, cell in enumerate(nb.cells):
            if cell.get("cell_type") != "code" or is_graded(cell) or not is_tagged(cell):
                continue
            if index in keep:
                kept += 1
                self.log.warning("grading mode: running experiment cell %s anyway: %s", cell_label(cell, index),
                                 "; ".join(str(r) for r in keep[index][:3]))
                continue
            cell.source = SKIPPED_SOURCE
            cell.outputs = []
            cell.execution_count = None
            skipped += 1
        self.log.info("grading mode: skipped %d experiment cell(s), kept %d", skipped, kept)
        return nb, resources


__all__ = [
    "PYPLOT",
    "RNG",
    "SETTINGS",
    "SKIPPED_SOURCE",
    "TAG",
    "Analysis",
    "CellInfo",
    "SkipExperiments",
    "analyse",
    "cell_kind",
    "is_graded",
    "is_tagged",
    "undeclared_dependencies",
]
