"""The answer rules: what a cell may contain for the grader to run it, checked on its text.

Threat model
------------
A student's answer cells run in the same kernel as the graded test cells, so
an answer can reach everything the tests rely on: it can register IPython
hooks (input or AST transformers, an exception handler, event callbacks,
magics, ``%``/``!`` lines), patch ``course_lib``, ``torch``, ``numpy``,
``builtins`` or ``sys.modules``, walk frames and the garbage collector to
find the reference answer (``sys._getframe``, ``inspect``,
``gen.gi_frame.f_back.f_globals``, ``e.__traceback__.tb_frame``), return an
object that lies about comparisons, shape, dtype or type (a ``torch.Tensor``
subclass with ``__eq__`` or ``__torch_function__``, a class with ``shape``
and ``dtype`` attributes), or read the instructor's files. Nothing that runs
*inside* that kernel can be trusted to notice, so :func:`screen` decides on
the cell's **text**, before it runs: the grader screens every submitted cell
outside the student's kernel and does not run (and flags) a cell that breaks
a rule; the self-checks (:mod:`course_lib.grading`) run the same screen on
the cell that defined the function or class they check, so an honest
student sees the same verdict before submitting.

Why allow-lists
---------------
Python offers endless spellings of the same trick: ``os`` is reachable as
``torch.os``, ``np.sys`` or ``course_lib.env.os``; ``eval`` as
``getattr(__builtins__, 'ev' + 'al')`` or through
``().__class__.__base__.__subclasses__()``. A list of forbidden things
always misses one, so the rules say what *is* allowed wherever they can:
the modules an answer may import (:data:`ALLOWED_MODULES`), the decorators
and class bases it may use, the double-underscore attributes it may touch.
Dotted names are resolved against the real modules (``torch.os`` is the
module ``os``), so a forbidden module cannot be reached through an allowed
one. The deny-lists that remain (builtins such as ``eval``, frame
attributes, file functions) cover things an allowed module hands out.

Every rule is an entry of :data:`RULES`: a short id, the message a student
reads, and the reason. The allow-lists were fitted to the honest code of the
course (the solutions, the experiment cells, the common-mistake submissions;
``tests/test_answer_rules.py`` screens all of them): no honest cell breaks a
rule.

Magics and shell commands are forbidden, except ``%time``/``%timeit`` (the
code they run is screened too), ``%matplotlib inline`` and ``obj?`` help.

Known limits
------------
* ``getattr(obj, name)`` / ``setattr(obj, name, value)`` with a variable
  ``name`` (the LoRA solutions need ``setattr(parent, name, layer)``) cannot
  be checked: a cell that uses them may not also hold underscore or hook
  strings, ``chr`` or ``dir``, but a name sliced out of other text gets
  through. :func:`course_lib.grading.check_untampered` then still notices
  hooks and library functions that come from a notebook cell.
* Mutating an object another cell created through its methods
  (``SOME_LIST.clear()``), or through an alias (``d = course_lib.x.TABLE``),
  is not caught; assignments to it are.
* Objects are tracked by name only: a module or library class reached at run
  time through an instance's attributes is not seen.
* ``str.format`` fields are checked in string literals only.
The grader's sandbox and the checks' own guards stand behind the screen.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import importlib.util
import re
import sys
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

__all__ = ["ALLOWED_MODULES", "RULES", "Rule", "Violation", "explain", "screen", "screen_notebook"]


# --------------------------------------------------------------------------
# Violations and the rule table
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    """One broken rule: where (``line`` of the cell, from 1), which (``rule`` id), and the student's message."""

    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Rule:
    """A rule: its id, the message a student reads (``{what}`` names the offending code) and why it exists."""

    id: str
    says: str
    why: str


RULES: dict[str, Rule] = {
    rule.id: rule
    for rule in (
        Rule("ipython", "answers may not use {what} (it reaches into the grader)",
             "IPython's shell runs the test cells too: its hooks, magics and shell commands can rewrite or "
             "silence them."),
        Rule("history", "answers may not read IPython's history variable `{what}` (it holds other cells' "
                        "code and results)",
             "`In`, `Out`, `_`, `_i3`, `_oh` ... hold every executed cell, hidden tests included."),
        Rule("import", "answers may not import {what} (answers import only torch, numpy, matplotlib, tqdm, "
                       "ipywidgets, course_lib's reference modules and small standard modules such as math, "
                       "random, itertools, functools, collections, copy and time)",
             "Only modules whose every public name is harmless are allowed (allow-list)."),
        Rule("module", "answers may not use {what}",
             "A forbidden module or name reached through an allowed one (`torch.os` is `os`)."),
        Rule("files", "answers may not read or write files ({what})",
             "The instructor's files (solutions, gradebook) must stay out of reach."),
        Rule("dynamic-code", "answers may not use {what} (code built at run time cannot be checked)",
             "eval/exec/compile/__import__ run text the screen never saw."),
        Rule("namespace", "answers may not use {what} (it reaches into the namespaces the grader shares)",
             "globals(), vars(), __builtins__ and friends expose the checks' own variables."),
        Rule("builtin", "answers may not use {what}",
             "Builtins with no place in an answer: they block the kernel or reach raw memory."),
        Rule("getattr", "answers may not use getattr/setattr/hasattr except as `getattr(obj, name)` on their "
                        "own objects ({what})",
             "With a module, a string-built or private name they reach anything."),
        Rule("type", "answers may not use {what}; test a type with isinstance (type(x).__name__ is fine)",
             "type(...) hands out classes to patch, and type(name, bases, ns) builds lying ones."),
        Rule("dunder", "answers may not use the attribute `{what}` (double-underscore attributes reach "
                       "Python's internals; only __init__ and __name__ are allowed)",
             "`__class__`, `__globals__`, `__subclasses__`, `__dict__` ... lead to any object."),
        Rule("private", "answers may not use the private attribute `{what}` (only `self._name` attributes "
                        "the cell sets itself)",
             "Private attributes are the internals of the library and of the checks."),
        Rule("frame", "answers may not use `{what}` (frames, code objects and tracebacks reach the grader's "
                      "variables)",
             "A frame's f_locals hold the reference function and the expected output."),
        Rule("hook", "answers may not register hooks (`{what}`): a hook would run inside the grader's checks",
             "Forward/backward/global hooks rewrite what the checks compute."),
        Rule("patch", "answers may not change {what}; change only objects your cell creates",
             "Rebinding an attribute of torch, numpy, course_lib, builtins or another cell's object changes "
             "what the checks compute."),
        Rule("alias", "answers may not store or pass around {what}; use it directly (e.g. `torch.zeros(3)`)",
             "A module or library class held in a variable could be patched under another name."),
        Rule("scope", "answers may not declare `{what}` global unless this cell assigns it at top level",
             "`global` on a name from another cell rebinds the notebook's variables from inside a function."),
        Rule("class", "answers may not define {what}",
             "Classes are for nn.Module layers and plain helpers; subclasses of torch.Tensor or builtins, "
             "metaclasses and protocol methods (__eq__, __bool__, __torch_function__, ...) make objects lie."),
        Rule("impersonation", "answers may not {what} (answers must return real tensors)",
             "An object with `shape`/`dtype` attributes, or `x.as_subclass(...)`, passes for a tensor."),
        Rule("decorator", "answers may not use the decorator `@{what}` (allowed: @torch.no_grad(), @property, "
                          "@staticmethod, @classmethod, @functools.lru_cache, @functools.wraps, @dataclass)",
             "A decorator runs arbitrary code on the definition."),
        Rule("computed-name", "answers may not use {what} in a cell that calls getattr/setattr with a variable name",
             "Together they build private names the screen cannot see."),
        Rule("too-complex", "answers may not nest expressions this deeply ({what})",
             "The screen could not analyse the cell."),
    )
}


def _violation(line: int, rule: str, what: str) -> Violation:
    return Violation(line, rule, f"line {line}: {RULES[rule].says.format(what=what)}")


# --------------------------------------------------------------------------
# Allow-lists and the deny-lists that remain
# --------------------------------------------------------------------------

_EVERY = None  # every public name of the module
_SUBMODULES_ONLY: frozenset[str] = frozenset()  # a namespace: only its allowed submodules


def _names(*names: str) -> frozenset[str]:
    return frozenset(names)


#: Module -> the names an answer may take from it (``None``: every public name; an empty set: only its allowed
#: submodules). ``"x.*"`` covers every public submodule of ``x``. Private modules (``_x``) are never allowed.
ALLOWED_MODULES: dict[str, frozenset[str] | None] = {
    # torch, minus serialization, hub, jit, multiprocessing, cpp_extension, library, ops, overrides, package,
    # distributed, compiler, fx, export, onnx, profiler, utils.benchmark, ... (not listed, so not allowed)
    "torch": _EVERY,
    **{f"torch.{sub}": _EVERY for sub in (
        "nn", "nn.*", "optim", "optim.*", "autograd", "autograd.functional", "autograd.grad_mode",
        "autograd.forward_ad", "func", "linalg", "fft", "special", "distributions", "distributions.*",
        "utils.data", "utils.checkpoint", "random", "cuda", "mps", "backends", "backends.*",
        "amp", "testing", "types", "sparse", "nested", "signal", "signal.*",
    )},
    "torch.utils": _SUBMODULES_ONLY,
    # numpy, minus its file and ctypes parts (numpy.lib, numpy.ctypeslib, numpy.f2py; np.load & co below)
    "numpy": _EVERY,
    **{f"numpy.{sub}": _EVERY for sub in ("random", "linalg", "fft", "testing", "polynomial", "polynomial.*")},
    # the standard library an answer plausibly needs
    **{name: _EVERY for name in (
        "math", "cmath", "random", "itertools", "functools", "collections", "collections.abc", "dataclasses",
        "typing", "re", "heapq", "bisect", "statistics", "copy", "time", "fractions", "textwrap", "pprint",
    )},
    "string": _names("ascii_letters", "ascii_lowercase", "ascii_uppercase", "digits", "hexdigits",
                     "octdigits", "punctuation", "printable", "whitespace", "capwords"),  # not string.Formatter
    "warnings": _names("warn", "filterwarnings", "simplefilter", "catch_warnings", "resetwarnings"),
    # plotting and widgets for experiment cells
    "matplotlib": _EVERY,
    **{f"matplotlib.{sub}": _EVERY for sub in ("pyplot", "colors", "cm", "ticker", "patches", "gridspec",
                                                "lines", "colorbar", "markers", "collections")},
    **{name: _names("tqdm", "trange") for name in ("tqdm", "tqdm.auto", "tqdm.notebook")},
    "ipywidgets": _EVERY,
    "ipywidgets.widgets": _EVERY,
    "IPython": _SUBMODULES_ONLY,
    "IPython.display": _names("display", "clear_output", "HTML", "Markdown", "Math", "Latex"),
    # the course's reference modules (not grading, checks, answer_rules, autograde)
    "course_lib": _EVERY,
    **{f"course_lib.{sub}": _EVERY for sub in (
        "basics", "data", "diffusion", "gan", "gpt", "attention", "tokenizer", "train", "metrics", "viz",
        "pretrained", "finetune", "env", "instruct", "preference", "pixels", "showdown",
    )},
    "course_lib.checks": _SUBMODULES_ONLY,
    # Honest course cells need these three (see the module docstring of tests/test_answer_rules.py):
    "course_lib.checks.pretraining": _names("slow_bpe_reference"),  # notebook 05 compares its BPE with it
    "socket": _names("create_connection"),  # notebook 05's GPT-2 cell checks it is online first
    "transformers": _names("GPT2LMHeadModel", "GPT2TokenizerFast"),  # notebook 05's optional GPT-2 cell
}

#: Names of allowed modules that read or write files, run code or import modules by name.
_DENIED_NAMES: dict[str, dict[str, tuple[str, str]]] = {
    "torch": {
        **{n: ("files", f"`torch.{n}`") for n in ("load", "save", "from_file")},
        "compile": ("module", "`torch.compile` (it runs a compiler outside Python)"),
    },
    "numpy": {n: ("files", f"`numpy.{n}`") for n in (
        "load", "save", "savez", "savez_compressed", "loadtxt", "savetxt", "genfromtxt", "fromfile", "memmap",
        "fromregex", "DataSource", "lib", "ctypeslib", "f2py",
    )},
    "matplotlib": {
        **{n: ("files", f"`matplotlib.{n}`") for n in ("rc_file", "rc_params_from_file", "style", "image")},
        "use": ("module", "`matplotlib.use` (it imports a module by name)"),
    },
    "matplotlib.pyplot": {
        **{n: ("files", f"`matplotlib.pyplot.{n}`") for n in ("imread", "imsave", "rc_file", "style")},
        "switch_backend": ("module", "`matplotlib.pyplot.switch_backend` (it imports a module by name)"),
    },
    "typing": {n: ("dynamic-code", f"`typing.{n}`") for n in ("get_type_hints", "ForwardRef")},  # eval strings
    "dataclasses": {"make_dataclass": ("class", "classes with `dataclasses.make_dataclass`")},
}

#: Where an object comes from (its ``__module__``) that no answer may touch, however it was reached.
_DANGEROUS_ORIGINS = (
    "os", "posix", "nt", "io", "_io", "pathlib", "shutil", "subprocess", "pickle", "_pickle", "marshal",
    "importlib", "ctypes", "_ctypes", "gc", "inspect", "sys", "code", "codeop", "runpy", "pty", "signal",
    "multiprocessing", "threading", "_thread", "IPython", "ipykernel", "linecache", "tempfile", "glob",
    "zipfile", "tarfile", "sqlite3", "_sqlite3", "urllib", "http", "weakref", "_weakref", "atexit", "asyncio",
    "traceback", "socket", "_socket", "json", "torch.serialization", "torch.hub", "torch.jit", "torch.library",
    "torch.multiprocessing", "torch.utils.cpp_extension", "torch.package", "torch.distributed", "torch.compiler",
    "torch.overrides", "torch.fx", "torch.onnx", "torch.export", "course_lib.grading", "course_lib.answer_rules",
    "course_lib.autograde",
)

#: Builtins (and IPython's globals) no answer may use, with the rule each breaks and a few words on why.
_FORBIDDEN_NAMES: dict[str, tuple[str, str]] = {
    "get_ipython": ("ipython", "get_ipython"),
    "exit": ("builtin", "exit (it stops the kernel)"),
    "quit": ("builtin", "quit (it stops the kernel)"),
    "eval": ("dynamic-code", "eval"),
    "exec": ("dynamic-code", "exec"),
    "compile": ("dynamic-code", "compile"),
    "__import__": ("dynamic-code", "__import__"),
    "globals": ("namespace", "globals()"),
    "locals": ("namespace", "locals()"),
    "vars": ("namespace", "vars()"),
    "open": ("files", "`open`"),
    "delattr": ("getattr", "delattr is not allowed"),
    "breakpoint": ("builtin", "breakpoint (it stops the kernel in a debugger)"),
    "input": ("builtin", "input (it waits for a keyboard the grader does not have)"),
    "memoryview": ("builtin", "memoryview (it reads raw memory)"),
}
#: Of those, the ones a cell may still use as a plain variable name once it assigns them itself first.
_HARMLESS_AS_VARIABLES = {"exit", "quit", "input", "compile", "open", "breakpoint", "memoryview"}

_IPYTHON_HISTORY = re.compile(r"_+|_i+|_i\d+|_\d+|_oh|_ih|_dh|_sh|_exit_code|In|Out")

#: Double-underscore attributes an answer may read.
_ALLOWED_DUNDERS = {"__init__", "__name__", "__qualname__", "__version__", "__dataclass_fields__"}
#: Double-underscore names an answer may read as plain names.
_ALLOWED_DUNDER_NAMES = {"__name__", "__debug__"}
#: Double-underscore methods a class may define.
_ALLOWED_CLASS_DUNDERS = {"__init__"}

_FRAME_ATTRS = frozenset(
    [a for a in dir(types.CodeType) if a.startswith("co_")]
    + ["f_back", "f_builtins", "f_code", "f_globals", "f_lasti", "f_lineno", "f_locals", "f_trace",
       "f_trace_lines", "f_trace_opcodes", "tb_frame", "tb_lasti", "tb_lineno", "tb_next", "gi_code", "gi_frame",
       "gi_running", "gi_suspended", "gi_yieldfrom", "cr_await", "cr_code", "cr_frame", "cr_origin", "cr_running",
       "cr_suspended", "ag_await", "ag_code", "ag_frame", "ag_running", "func_globals", "func_code", "im_func",
       "im_self"]
)
_MEMORY_ATTRS = {"ctypes"}  # ndarray.ctypes: raw pointers
_FILE_ATTRS = {"tofile", "from_file", "fromfile", "dump", "read_text", "read_bytes", "write_text", "write_bytes",
               "savetxt", "loadtxt", "readlines"}
#: Attributes of a torch.Tensor that a class passing itself off as a tensor would define.
_TENSOR_ATTRS = {
    "shape", "dtype", "device", "ndim", "size", "numel", "item", "tolist", "numpy", "detach", "clone", "cpu",
    "is_floating_point", "is_complex", "dim", "data", "grad", "requires_grad", "T", "mT", "stride", "nonzero",
    "eq", "ne", "equal", "allclose", "isclose", "abs", "sum", "min", "max", "all", "any", "to", "float", "double",
    "nelement", "element_size", "nbytes", "itemsize", "storage", "untyped_storage", "data_ptr", "layout",
    "is_sparse", "isnan", "isfinite", "nan_to_num",
}
#: Of those, the ones a class may not even hold as plain data (a config may well have a `device` field).
_TENSOR_DATA_ATTRS = {"shape", "dtype", "ndim", "T", "mT", "layout"}

#: The names the notebooks' read-only cells (setup, imports, self-checks) bind to modules and classes: an
#: answer cell uses them without importing them. ``tests/test_answer_rules.py`` keeps this in step.
NOTEBOOK_IMPORTS = """
import copy, functools, math, subprocess, sys, time
from collections.abc import Callable
import numpy as np
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn
import course_lib
import course_lib.gan as reference
import course_lib.gan as reference_gan
from course_lib import metrics
from course_lib.diffusion import Denoiser, NoiseSchedule, NoiseSchedule as _Schedule
from course_lib.finetune import LoRALinear as ReferenceLoRALinear
from course_lib.gpt import GPT, GPTConfig, Block as ReferenceBlock, GPTConfig as ReferenceConfig
from course_lib.attention import MultiHeadAttention
from course_lib.tokenizer import CharTokenizer as ReferenceCharTokenizer
from course_lib.viz import LivePlot
from course_lib.grading import CheckFailed
"""

_ISINSTANCE = {"isinstance", "issubclass"}
_FUNCTION_DECORATORS = ("torch.no_grad", "torch.enable_grad", "torch.inference_mode", "functools.lru_cache",
                        "functools.cache", "functools.wraps", "functools.cached_property")
_CLASS_DECORATORS = ("dataclasses.dataclass",)
_MISSING = object()
#: Magics an answer may use. %time/%timeit run their argument as code, so the screen checks that code too.
_ALLOWED_MAGICS = {"time", "timeit", "matplotlib", "pinfo", "pinfo2"}
_MATPLOTLIB_BACKENDS = re.compile(r"\s*(inline|widget|ipympl|agg)?\s*")
_TIMEIT_OPTIONS = re.compile(r"^\s*((-[nrp]\s*\d+(\.\d+)?|-[tcqo])\s+)*")
_FORMAT_FIELD = re.compile(r"\{[^{}]*?\.(_\w*)")


# --------------------------------------------------------------------------
# Resolving dotted names against the real modules
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ref:
    """What a name or dotted chain refers to: a module, a namespace, a library class or object, a builtin."""

    kind: str  # "module" | "namespace" | "restricted" | "class" | "object" | "builtin"
    path: str
    obj: Any = None
    names: frozenset[str] | None = None  # restricted modules: the names an answer may take


class _Denied(Exception):
    def __init__(self, rule: str, what: str):
        super().__init__(what)
        self.rule, self.what = rule, what


def _policy(name: str) -> frozenset[str] | None | object:
    """The allowed names of module ``name`` (see ALLOWED_MODULES), or _MISSING when it is not allowed."""
    parts = name.split(".")
    if any(p.startswith("_") for p in parts):
        return _MISSING
    if name in ALLOWED_MODULES:
        return ALLOWED_MODULES[name]
    for i in range(len(parts) - 1, 0, -1):
        key = ".".join(parts[:i]) + ".*"
        if key in ALLOWED_MODULES:
            return ALLOWED_MODULES[key]
    return _MISSING


def _is_submodule_name(name: str) -> bool:
    if name in sys.modules:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError, AttributeError):
        return False


@cache
def _module_ref(name: str) -> _Ref:
    """A _Ref for module ``name``; raises _Denied when answers may not use it."""
    policy = _policy(name)
    if policy is _MISSING:
        raise _Denied("module", f"the module `{name}`")
    if policy is _SUBMODULES_ONLY:
        return _Ref("namespace", name)
    if policy is not _EVERY:
        return _Ref("restricted", name, names=policy)
    try:
        module = importlib.import_module(name)
    except Exception:  # not installed here: judge by name only
        return _Ref("restricted", name, names=None)
    return _Ref("module", name, module)


def _dangerous_origin(obj: Any) -> str | None:
    module = getattr(obj, "__module__", None) if not isinstance(obj, types.ModuleType) else None
    if not isinstance(module, str):
        return None
    for origin in _DANGEROUS_ORIGINS:
        if module == origin or module.startswith(origin + "."):
            return module
    return None


def _forbidden_builtin(obj: Any) -> str | None:
    for name in (*_FORBIDDEN_NAMES, "getattr", "setattr", "hasattr", "type"):
        if obj is getattr(builtins, name, _MISSING):
            return name
    return None


def _object_ref(path: str, obj: Any) -> _Ref:
    if isinstance(obj, types.ModuleType):
        return _module_ref(obj.__name__)
    name = _forbidden_builtin(obj)
    if name is not None:
        rule = _FORBIDDEN_NAMES[name][0] if name in _FORBIDDEN_NAMES else "type" if name == "type" else "getattr"
        raise _Denied(rule, f"`{path}` (it is the builtin {name})")
    if obj is _get_ipython():
        raise _Denied("ipython", f"`{path}` (it is get_ipython)")
    for module, names in _DENIED_NAMES.items():
        loaded = sys.modules.get(module)
        for attr, (rule, what) in names.items():
            if loaded is not None and getattr(loaded, attr, _MISSING) is obj:
                raise _Denied(rule, what if what.startswith(f"`{path}`") else f"`{path}` (it is {what})")
    origin = _dangerous_origin(obj)
    if origin is not None:
        raise _Denied("module", f"`{path}` (it comes from `{origin}`)")
    return _Ref("class" if isinstance(obj, type) else "object", path, obj)


def _get_ipython() -> Any:
    module = sys.modules.get("IPython.core.getipython")
    return getattr(module, "get_ipython", _MISSING) if module else _MISSING


def _attribute_ref(base: _Ref, attr: str) -> _Ref | None:
    """What ``base.attr`` refers to; None when it is an attribute of a value (nothing more to resolve)."""
    if base.kind in ("class", "object", "builtin"):
        return None
    path = f"{base.path}.{attr}"
    denied = _DENIED_NAMES.get(base.path, {}).get(attr)
    if denied:
        raise _Denied(*denied)
    if attr.startswith("_"):
        return None  # the private/dunder rules report it
    if base.kind in ("namespace", "restricted"):
        if _policy(path) is not _MISSING:  # an allowed submodule
            return _module_ref(path)
        if base.kind == "restricted" and (base.names is None or attr in base.names):
            return _Ref("object", path)
        allowed = ", ".join(f"`{base.path}.{n}`" for n in sorted(base.names or ()))
        raise _Denied("module", f"`{path}`" + (f" (from {base.path} only {allowed})" if allowed else ""))
    module = base.obj
    full = f"{module.__name__}.{attr}"
    value = vars(module).get(attr, _MISSING)
    if value is _MISSING and _is_submodule_name(full):
        return _module_ref(full)
    if value is _MISSING:
        try:
            value = getattr(module, attr)
        except Exception:
            return _Ref("object", path)  # fails at run time too
    if isinstance(value, types.ModuleType):
        try:
            return _module_ref(value.__name__)
        except _Denied as denied:
            if value.__name__ != full:
                raise _Denied("module", f"`{path}`, which is the module `{value.__name__}`") from None
            raise denied from None
    return _object_ref(path, value)


@cache
def _allowed_decorators(paths: tuple[str, ...]) -> tuple[Any, ...]:
    found = []
    for path in paths:
        module, _, attr = path.rpartition(".")
        try:
            found.append(getattr(importlib.import_module(module), attr))
        except Exception:
            continue
    return tuple(found)


@cache
def _library_internals() -> frozenset[str]:
    """Private attributes of nn.Module and torch.Tensor (hooks, submodules, parameters): never an answer's own."""
    module_class = _nn_module_class()
    if module_class is None:
        return frozenset()
    import torch

    names = set(vars(module_class()).keys()) | set(dir(module_class)) | set(dir(torch.Tensor))
    return frozenset(n for n in names if n.startswith("_"))


@cache
def _module_api() -> frozenset[str]:
    """nn.Module's public methods and attributes, which a layer must not redefine (all but forward & co)."""
    module_class = _nn_module_class()
    names = {n for n in dir(module_class) if not n.startswith("_")} if module_class is not None else set()
    return frozenset(names - {"forward", "extra_repr", "reset_parameters"})


def _nn_module_class() -> type | None:
    torch = sys.modules.get("torch")
    if torch is None:
        try:
            import torch
        except ImportError:
            return None
    return torch.nn.Module


# --------------------------------------------------------------------------
# Scopes: which binding a name refers to
# --------------------------------------------------------------------------


@dataclass
class _Binding:
    kind: str  # "import" | "own"
    pos: tuple[int, int]
    ref: _Ref | None = None
    node: ast.AST | None = None
    top_level: bool = False  # bound by a statement of the cell's top level (not through `global`)


class _Scope:
    def __init__(self, kind: str, parent: _Scope | None):
        self.kind, self.parent = kind, parent  # "module" | "function" | "class" | "comprehension"
        self.bindings: dict[str, list[_Binding]] = {}
        self.globals: set[str] = set()
        self.nonlocals: set[str] = set()

    def bind(self, name: str, binding: _Binding) -> None:
        self.bindings.setdefault(name, []).append(binding)


def _pos(node: ast.AST) -> tuple[int, int]:
    return (getattr(node, "lineno", 0), getattr(node, "col_offset", 0))


_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


class _Binder(ast.NodeVisitor):
    """Pass 1: the scopes of the cell, every binding in them, and the scope each name is read in."""

    def __init__(self, screen: _Screen):
        self.screen = screen
        self.module = _Scope("module", None)
        self.scope = self.module
        self.scope_of: dict[int, _Scope] = {}

    def _target_scope(self, name: str) -> _Scope:
        scope = self.scope
        if name in scope.globals:
            return self.module
        if name in scope.nonlocals:
            outer = scope.parent
            while outer is not None and (outer.kind == "class" or name not in outer.bindings):
                outer = outer.parent
            return outer or self.module
        return scope

    def _bind(self, name: str, node: ast.AST, kind: str = "own", ref: _Ref | None = None, at=None) -> None:
        target = self._target_scope(name)
        binding = _Binding(kind, at or _pos(node), ref, node, top_level=self.scope is self.module)
        target.bind(name, binding)

    def _enter(self, kind: str) -> _Scope:
        self.scope = _Scope(kind, self.scope)
        return self.scope

    def visit_Name(self, node: ast.Name) -> None:
        self.scope_of[id(node)] = self.scope
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            at = self._comprehension_pos if self.scope.kind == "comprehension" else None
            self._bind(node.id, node, at=at)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        scope = self.scope
        while scope.kind == "comprehension":
            scope = scope.parent
        self.scope_of[id(node.target)] = self.scope
        scope.bind(node.target.id, _Binding("own", _pos(node), node=node, top_level=scope is self.module))

    def visit_Global(self, node: ast.Global) -> None:
        self.scope.globals.update(node.names)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self.scope.nonlocals.update(node.names)

    def _visit_function(self, node, args: ast.arguments, body: list[ast.AST] | ast.AST) -> None:
        for default in [*args.defaults, *(d for d in args.kw_defaults if d is not None)]:
            self.visit(default)
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if arg is not None and arg.annotation is not None:
                self.visit(arg.annotation)
        outer = self.scope
        inner = self._enter("function")
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if arg is not None:
                inner.bind(arg.arg, _Binding("own", _pos(node), node=arg))
        self.scope_of[id(node)] = inner
        for stmt in body if isinstance(body, list) else [body]:
            self.visit(stmt)
        self.scope = outer

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        if node.returns is not None:
            self.visit(node.returns)
        self._bind(node.name, node)
        self._visit_function(node, node.args, node.body)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._visit_function(node, node.args, node.body)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
            self.visit(expr)
        self._bind(node.name, node)
        outer = self.scope
        self.scope_of[id(node)] = self._enter("class")
        for stmt in node.body:
            self.visit(stmt)
        self.scope = outer

    _comprehension_pos: tuple[int, int] | None = None

    def _visit_comprehension(self, node, parts: list[ast.AST]) -> None:
        generators = node.generators
        self.visit(generators[0].iter)
        outer, outer_pos = self.scope, self._comprehension_pos
        self.scope_of[id(node)] = self._enter("comprehension")
        self._comprehension_pos = _pos(node)
        for i, gen in enumerate(generators):
            if i:
                self.visit(gen.iter)
            self.visit(gen.target)
            for cond in gen.ifs:
                self.visit(cond)
        for part in parts:
            self.visit(part)
        self.scope, self._comprehension_pos = outer, outer_pos

    def visit_ListComp(self, node) -> None:
        self._visit_comprehension(node, [node.elt])

    visit_SetComp = visit_GeneratorExp = visit_ListComp

    def visit_DictComp(self, node: ast.DictComp) -> None:
        self._visit_comprehension(node, [node.key, node.value])

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            ref = self.screen.import_ref(node, alias.name)
            if alias.asname:
                self._bind(alias.asname, node, "import", ref)
            else:
                top = alias.name.split(".")[0]
                self._bind(top, node, "import", self.screen.safe_module_ref(top) if ref else None)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            ref = self.screen.import_from_ref(node, alias.name)
            if alias.name != "*":
                self._bind(alias.asname or alias.name, node, "import", ref)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self._bind(node.name, node)
        for stmt in node.body:
            self.visit(stmt)

    def visit_MatchAs(self, node) -> None:
        if node.pattern is not None:
            self.visit(node.pattern)
        if node.name:
            self._bind(node.name, node)

    def visit_MatchStar(self, node) -> None:
        if node.name:
            self._bind(node.name, node)

    def visit_MatchMapping(self, node) -> None:
        self.generic_visit(node)
        if node.rest:
            self._bind(node.rest, node)


# --------------------------------------------------------------------------
# The screen
# --------------------------------------------------------------------------


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _magic(call: ast.Call) -> str | None:
    """`%name` / `%%name` / `!cmd` when ``call`` is what IPython's transformer turned such a line into."""
    func = call.func
    if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Call)):
        return None
    inner = func.value.func
    if not (isinstance(inner, ast.Name) and inner.id == "get_ipython"):
        return None
    first = call.args[0].value if call.args and isinstance(call.args[0], ast.Constant) else ""
    text = str(first).split("\n")[0][:40]
    return {
        "run_line_magic": f"the magic `%{text}`",
        "run_cell_magic": f"the cell magic `%%{text}`",
        "system": f"the shell command `!{text}`",
        "getoutput": f"the shell command `!{text}`",
    }.get(func.attr)


class _Screen(ast.NodeVisitor):
    """Pass 2: every rule, on every node."""

    def __init__(self, tree: ast.Module, offset: int):
        self.tree, self.offset = tree, offset
        self.found: list[Violation] = []
        self.parent: dict[int, ast.AST] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                self.parent[id(child)] = node
        self.annotations: set[int] = set()
        self.docstrings: set[int] = set()
        self.own_private: set[str] = set()
        self.dynamic_names = False
        for node in ast.walk(tree):
            for annotation in self._annotations_of(node):
                self.annotations.update(id(n) for n in ast.walk(annotation))
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
                first = node.body[0]
                if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                    self.docstrings.add(id(first.value))
            if (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and node.attr.startswith("_")
                    and isinstance(node.value, ast.Name) and node.value.id == "self"):
                self.own_private.add(node.attr)
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in ("getattr", "setattr", "hasattr") and len(node.args) >= 2
                    and not isinstance(node.args[1], ast.Constant)):
                self.dynamic_names = True
        self.refs: dict[int, _Ref | None] = {}
        self.binder = _Binder(self)
        self.notebook = _notebook_refs()

    @staticmethod
    def _annotations_of(node: ast.AST) -> list[ast.AST]:
        if isinstance(node, ast.arg):
            return [node.annotation] if node.annotation is not None else []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return [node.returns] if node.returns is not None else []
        if isinstance(node, ast.AnnAssign):
            return [node.annotation]
        return []

    # -- reporting --------------------------------------------------------

    def report(self, node: ast.AST, rule: str, what: str) -> None:
        line = getattr(node, "lineno", None)
        if line is None:
            up = self.parent.get(id(node))
            while up is not None and getattr(up, "lineno", None) is None:
                up = self.parent.get(id(up))
            line = getattr(up, "lineno", 1)
        self.found.append(_violation(line + self.offset, rule, what))

    def run(self) -> list[Violation]:
        self.binder.visit(self.tree)
        self.visit(self.tree)
        return list(dict.fromkeys(self.found))

    # -- imports (called by the binder) ------------------------------------

    def safe_module_ref(self, name: str) -> _Ref | None:
        try:
            return _module_ref(name)
        except _Denied:
            return None

    def import_ref(self, node: ast.Import, name: str) -> _Ref | None:
        parts = name.split(".")
        try:
            ref = None
            for i in range(1, len(parts) + 1):
                ref = _module_ref(".".join(parts[:i]))
            return ref
        except _Denied:
            self.report(node, "import", f"`{name}`")
            return None

    def import_from_ref(self, node: ast.ImportFrom, name: str) -> _Ref | None:
        module = node.module or ""
        if node.level:
            self.report(node, "import", f"`from {'.' * node.level}{module} import {name}` (a relative import)")
            return None
        if module == "__future__":
            if name != "annotations":
                self.report(node, "import", f"`from __future__ import {name}`")
            return None
        if name == "*":
            self.report(node, "import", f"`from {module} import *` (import the names you need)")
            return None
        try:
            base = self.import_ref_quiet(module)
            if name.startswith("_"):
                raise _Denied("import", f"`{name}` from {module} (a private name)")
            ref = _attribute_ref(base, name)
            return ref or _Ref("object", f"{module}.{name}")
        except _Denied as denied:
            rule = "import" if denied.rule == "module" else denied.rule
            what = denied.what if rule != "import" or denied.what.startswith("`") else f"`{module}.{name}`"
            self.report(node, rule, what)
            return None

    def import_ref_quiet(self, module: str) -> _Ref:
        parts = module.split(".")
        ref = None
        for i in range(1, len(parts) + 1):
            ref = _module_ref(".".join(parts[:i]))
        return ref

    def visit_Import(self, node: ast.Import) -> None:
        pass  # checked by the binder

    visit_ImportFrom = visit_Import

    # -- names ------------------------------------------------------------

    def lookup(self, node: ast.Name) -> tuple[_Scope, list[_Binding]] | None:
        scope = self.binder.scope_of.get(id(node), self.binder.module)
        name, first = node.id, True
        while scope is not None:
            if name in scope.globals:
                scope = self.binder.module
            if scope.kind == "class" and not first:
                scope = scope.parent
                continue
            if name in scope.bindings:
                return scope, scope.bindings[name]
            scope, first = scope.parent, False
        return None

    def own(self, node: ast.Name, strict: bool = False) -> bool:
        """Whether ``node`` refers to a binding of this cell (strict: one that certainly shadows a builtin)."""
        found = self.lookup(node)
        if found is None:
            return False
        scope, bindings = found
        if any(b.kind == "import" for b in bindings):
            return False
        if scope.kind in ("function", "comprehension"):
            return True
        if strict:
            return False
        return any(b.pos < _pos(node) for b in bindings)

    def name_ref(self, node: ast.Name) -> _Ref | None:
        found = self.lookup(node)
        if found is not None:
            imports = [b for b in found[1] if b.kind == "import"]
            return imports[-1].ref if imports else None
        if node.id in self.notebook:
            return self.notebook[node.id]
        if hasattr(builtins, node.id):
            return _Ref("builtin", node.id, getattr(builtins, node.id))
        return None

    def visit_Name(self, node: ast.Name) -> None:
        name = node.id
        load = isinstance(node.ctx, (ast.Load, ast.Del))
        if _is_dunder(name) and name not in _ALLOWED_DUNDER_NAMES and name not in _FORBIDDEN_NAMES:
            in_class = self.binder.scope_of.get(id(node), self.binder.module).kind == "class"
            if not (in_class and isinstance(node.ctx, ast.Store)):  # a class attribute: the class rule says why
                self.report(node, "namespace", f"`{name}`")
            return
        if not load:
            return
        if name in _FORBIDDEN_NAMES and not self.own(node, strict=name not in _HARMLESS_AS_VARIABLES):
            rule, what = _FORBIDDEN_NAMES[name]
            parent = self.parent.get(id(node))
            grand = self.parent.get(id(parent)) if parent is not None else None
            magic = _magic(self.parent.get(id(grand))) if isinstance(
                self.parent.get(id(grand)), ast.Call) and name == "get_ipython" else None
            self.report(node, rule, magic or what)
            return
        if _IPYTHON_HISTORY.fullmatch(name) and not self.own(node):
            self.report(node, "history", name)
            return
        if name in ("getattr", "setattr", "hasattr") and not self.own(node, strict=True):
            parent = self.parent.get(id(node))
            if not (isinstance(parent, ast.Call) and parent.func is node):
                self.report(node, "getattr", f"`{name}` used as a value")
            return
        if name == "type" and not self.own(node, strict=True):
            self.check_type(node)
            return
        if name in ("chr", "dir") and self.dynamic_names and not self.own(node, strict=True):
            self.report(node, "computed-name", f"`{name}`")
            return
        ref = self.name_ref(node)
        if ref is None:
            return
        if ref.kind == "denied":
            self.report(node, "module", ref.path)
            return
        self.check_value(node, ref)

    def check_type(self, node: ast.Name) -> None:
        call = self.parent.get(id(node))
        up = self.parent.get(id(call)) if call is not None else None
        if (isinstance(call, ast.Call) and call.func is node and len(call.args) == 1 and not call.keywords
                and isinstance(up, ast.Attribute) and up.attr in ("__name__", "__qualname__")):
            return
        self.report(node, "type", "type(...)")

    def check_value(self, node: ast.AST, ref: _Ref) -> None:
        """Modules and library classes may only be used in place (called, dotted into, isinstance ...)."""
        if ref.kind not in ("module", "namespace", "restricted", "class"):
            return
        if ref.kind == "class" and getattr(ref.obj, "__module__", "") == "builtins":
            return
        parent = self.parent.get(id(node))
        if isinstance(parent, ast.Attribute) and parent.value is node:
            return
        if id(node) in self.annotations:
            return
        if ref.kind == "class":
            if isinstance(parent, ast.Call) and parent.func is node:
                return
            if isinstance(parent, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                return  # a base or a decorator: checked by their own rules
            if isinstance(parent, (ast.ExceptHandler, ast.Compare)):
                return
            if isinstance(parent, ast.Subscript) and parent.value is node:
                return
            holder = parent
            if isinstance(parent, ast.Tuple):
                holder = self.parent.get(id(parent))
                if isinstance(holder, ast.ExceptHandler):
                    return
            if (isinstance(holder, ast.Call) and isinstance(holder.func, ast.Name) and holder.func.id in _ISINSTANCE
                    and not self.own(holder.func, strict=True) and holder.args
                    and holder.args[0] is not node and holder.args[0] is not parent):
                return
        kind = "the module" if ref.kind != "class" else "the library class"
        self.report(node, "alias", f"{kind} `{ref.path}`")

    # -- attributes -------------------------------------------------------

    def ref_of(self, node: ast.AST) -> _Ref | None:
        """What ``node`` (a name or dotted chain) refers to; reports a forbidden module or object once."""
        if id(node) in self.refs:
            return self.refs[id(node)]
        ref = None
        if isinstance(node, ast.Name):
            ref = self.name_ref(node)
            if ref is not None and ref.kind == "denied":
                ref = None
        elif isinstance(node, ast.Attribute):
            base = self.ref_of(node.value)
            if base is not None:
                try:
                    ref = _attribute_ref(base, node.attr)
                except _Denied as denied:
                    self.report(node, denied.rule, denied.what)
        self.refs[id(node)] = ref
        return ref

    def attribute_name_rules(self, node: ast.AST, value: ast.AST, attr: str, store: bool) -> bool:
        """The rules on an attribute name (also for getattr's constant names); True when one was broken."""
        if _is_dunder(attr):
            ok = attr in _ALLOWED_DUNDERS and not store
            if attr == "__class__" and not store:
                up = self.parent.get(id(node))
                ok = isinstance(up, ast.Attribute) and up.value is node and up.attr in ("__name__", "__qualname__")
            if not ok:
                self.report(node, "dunder", attr)
                return True
            return False
        if attr.startswith("_"):
            on_self = isinstance(value, ast.Name) and value.id == "self"
            if not (on_self and attr in self.own_private) or attr in _library_internals():
                self.report(node, "private", attr)
                return True
            return False
        if attr in _FRAME_ATTRS:
            self.report(node, "frame", attr)
            return True
        if "hook" in attr.lower():
            self.report(node, "hook", attr)
            return True
        if attr == "mro":
            self.report(node, "type", "`.mro()`")
            return True
        if attr in _MEMORY_ATTRS:
            self.report(node, "builtin", f"`.{attr}` (it reaches raw memory)")
            return True
        if attr in _FILE_ATTRS:
            self.report(node, "files", f"`.{attr}`")
            return True
        if attr == "as_subclass":
            self.report(node, "impersonation", "turn a tensor into a subclass with `.as_subclass`")
            return True
        return False

    def visit_Attribute(self, node: ast.Attribute) -> None:
        store = isinstance(node.ctx, (ast.Store, ast.Del))
        if self.attribute_name_rules(node, node.value, node.attr, store):
            self.visit(node.value)
            return
        before = len(self.found)
        ref = self.ref_of(node)
        if store:
            self.check_root(node)
        elif ref is not None and len(self.found) == before:
            self.check_value(node, ref)
        elif node.attr == "register" and getattr(self.ref_of(node.value), "kind", None) == "class":
            # abc.ABCMeta.register: makes isinstance(x, SomeLibraryABC) true for the grader too
            self.report(node, "patch", f"`{ast.unparse(node.value)}` with `.register`")
        self.visit(node.value)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self.check_root(node)
        self.generic_visit(node)

    def visit_Starred(self, node: ast.Starred) -> None:
        self.generic_visit(node)

    def check_root(self, target: ast.AST, what: str | None = None) -> None:
        """A store or del through ``target`` must change an object the cell itself created."""
        root = target
        while isinstance(root, (ast.Attribute, ast.Subscript, ast.Call, ast.Starred)):
            root = root.func if isinstance(root, ast.Call) else root.value
        shown = what or f"`{ast.unparse(target)}`"
        if not isinstance(root, ast.Name):
            self.report(target, "patch", f"{shown} (assign to an attribute of a variable of this cell)")
            return
        found = self.lookup(root)
        if found is not None and not any(b.kind == "import" for b in found[1]):
            return
        if found is not None or root.id in self.notebook:
            owner = "a module or class the grader also uses"
        elif hasattr(builtins, root.id):
            owner = "a builtin"
        else:
            owner = "an object of another cell"
        self.report(target, "patch", f"{shown} ({owner})")

    # -- calls ------------------------------------------------------------

    def allowed_magic(self, node: ast.Call) -> list[Violation] | None:
        """The violations of the code an allowed magic runs (%time x, %%timeit, %matplotlib inline, x?).

        None when ``node`` is not one of those magics (a magic an answer may not use is reported as such).
        """
        if _magic(node) is None or node.func.attr not in ("run_line_magic", "run_cell_magic") or node.keywords:
            return None
        args = [a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else None for a in node.args]
        if not args or args[0] not in _ALLOWED_MAGICS or None in args:
            return None
        name, line = args[0], args[1] if len(args) > 1 else ""
        body = args[2] if node.func.attr == "run_cell_magic" and len(args) > 2 else None
        if name == "matplotlib":
            return [] if body is None and _MATPLOTLIB_BACKENDS.fullmatch(line) else None
        if name.startswith("pinfo"):
            try:
                expression = ast.parse(line.strip(), mode="eval").body
            except SyntaxError:
                return None
            if not isinstance(expression, (ast.Name, ast.Attribute)):
                return None
            return self.fragment(line.strip(), node.lineno, 0)
        statement = _TIMEIT_OPTIONS.sub("", line, count=1)
        found = self.fragment(statement, node.lineno, 0)
        if body is not None:
            found += self.fragment(body, node.lineno, node.lineno)  # the cell's body starts on its next line
        return found

    def fragment(self, code: str, line: int, body_offset: int) -> list[Violation]:
        """Screen code a magic runs; report its violations on ``line`` (line magics) or per line (cell bodies)."""
        found = []
        for v in _screen(code):
            at = (v.line + body_offset) if body_offset else line
            found.append(Violation(at + self.offset, v.rule, re.sub(r"^line \d+:", f"line {at + self.offset}:",
                                                                   v.message)))
        return found

    def visit_Call(self, node: ast.Call) -> None:
        magic = self.allowed_magic(node)
        if magic is not None:
            self.found.extend(magic)
            return
        func = node.func
        if isinstance(func, ast.Name) and func.id in ("getattr", "setattr", "hasattr") and not self.own(
                func, strict=True):
            self.check_attribute_call(node, func.id)
        self.generic_visit(node)

    def check_attribute_call(self, node: ast.Call, name: str) -> None:
        arity = {"getattr": (2, 3), "setattr": (3,), "hasattr": (2,)}[name]
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args) or len(node.args) not in arity:
            self.report(node, "getattr", f"`{name}` with unusual arguments")
            return
        obj, attr = node.args[0], node.args[1]
        ref = self.ref_of(obj)
        if ref is not None or not isinstance(obj, (ast.Name, ast.Attribute, ast.Subscript, ast.Call)):
            shown = ast.unparse(obj)
            self.report(node, "getattr", f"`{name}` on `{shown}`, which is not an object of this cell")
            return
        if isinstance(attr, ast.Constant):
            if not isinstance(attr.value, str) or not attr.value.isidentifier():
                self.report(node, "getattr", f"`{name}` with the name {attr.value!r}")
            else:
                self.attribute_name_rules(attr, obj, attr.value, store=name == "setattr")
        elif not (isinstance(attr, ast.Name) or self.starts_with_a_letter(attr)):
            self.report(node, "getattr", f"`{name}` with a computed name `{ast.unparse(attr)}`")
        if name == "setattr":
            self.check_root(obj, f"`{ast.unparse(obj)}` through setattr")

    @staticmethod
    def starts_with_a_letter(expr: ast.AST) -> bool:
        """An f-string or sum of strings whose first piece is a literal starting with a letter (never private)."""
        while isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
            expr = expr.left
        if isinstance(expr, ast.JoinedStr) and expr.values:
            expr = expr.values[0]
        return isinstance(expr, ast.Constant) and isinstance(expr.value, str) and expr.value[:1].isalpha()

    def visit_Constant(self, node: ast.Constant) -> None:
        if not isinstance(node.value, (str, bytes)) or id(node) in self.docstrings:
            return
        text = node.value.decode("latin-1") if isinstance(node.value, bytes) else node.value
        field = _FORMAT_FIELD.search(text)
        if field:  # "{0.__class__}".format(x) reads attributes the dunder rule forbids
            self.report(node, "dunder", field.group(1))
            return
        if not self.dynamic_names:
            return
        if text.startswith("_") or "__" in text or text in _FRAME_ATTRS or "hook" in text.lower():
            self.report(node, "computed-name", f"the string {text[:30]!r}")

    # -- definitions ------------------------------------------------------

    def visit_Global(self, node: ast.Global) -> None:
        module = self.binder.module
        for name in node.names:
            if not any(b.top_level and b.kind == "own" for b in module.bindings.get(name, [])):
                self.report(node, "scope", name)

    def check_decorators(self, node, builtin_names: tuple[str, ...], allowed_paths: tuple[str, ...]) -> None:
        for decorator in node.decorator_list:
            base = decorator.func if isinstance(decorator, ast.Call) else decorator
            if isinstance(base, ast.Name) and base.id in builtin_names and not self.own(base, strict=True):
                continue
            if (isinstance(base, ast.Attribute) and base.attr in ("setter", "getter", "deleter")
                    and isinstance(base.value, ast.Name) and not isinstance(decorator, ast.Call)):
                continue  # @value.setter of a property
            before = len(self.found)
            ref = self.ref_of(base)
            if len(self.found) > before:
                continue
            allowed = _allowed_decorators(allowed_paths)
            if ref is not None and ref.obj is not None and any(ref.obj is a for a in allowed):
                continue
            self.report(decorator, "decorator", ast.unparse(decorator)[:40])

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.check_decorators(node, ("property", "staticmethod", "classmethod"), _FUNCTION_DECORATORS)
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.check_decorators(node, (), _CLASS_DECORATORS)
        for base in node.bases:
            self.check_base(node, base)
        for keyword in node.keywords:
            self.report(node, "class", f"a class with `{keyword.arg or '**'}=` (no metaclasses or class keywords)")
        module_api = _module_api() if node.bases else frozenset()
        for stmt in node.body:
            names: list[tuple[ast.AST, str]] = []
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names.append((stmt, stmt.name))
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                names += [(n, n.id) for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
            method = isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) or isinstance(
                getattr(stmt, "value", None), (ast.Lambda, ast.Call))  # shape = property(...) is a method too
            for where, name in names:
                if _is_dunder(name) and name not in _ALLOWED_CLASS_DUNDERS:
                    self.report(where, "class", f"the method `{name}` (among double-underscore methods only "
                                                "__init__ is allowed; others change how Python compares, "
                                                "converts or looks up the object)")
                elif name in (_TENSOR_ATTRS if method else _TENSOR_DATA_ATTRS):
                    self.report(where, "impersonation", f"give a class the tensor attribute `{name}`")
                elif name in module_api:
                    self.report(where, "class", f"`{name}` in a module class (it changes what nn.Module reports to "
                                                "the checks; a layer overrides only forward, extra_repr and "
                                                "reset_parameters)")
        self.generic_visit(node)

    def check_base(self, node: ast.ClassDef, base: ast.AST) -> None:
        if isinstance(base, ast.Name):
            if base.id == "object" and not self.own(base, strict=True):
                return
            found = self.lookup(base)
            if found is not None and any(isinstance(b.node, ast.ClassDef) for b in found[1]):
                return
        before = len(self.found)
        ref = self.ref_of(base)
        if len(self.found) > before:
            return
        module_class = _nn_module_class()
        if (ref is not None and ref.kind == "class" and module_class is not None
                and issubclass(ref.obj, module_class)):
            return
        self.report(base, "class", f"a subclass of `{ast.unparse(base)}` (subclass nn.Module, or nothing)")


@lru_cache(maxsize=1)
def _notebook_refs() -> dict[str, _Ref]:
    """NOTEBOOK_IMPORTS as refs; a forbidden module (the setup cell's sys) as kind 'denied'."""
    refs: dict[str, _Ref] = {}
    for node in ast.parse(NOTEBOOK_IMPORTS).body:
        for alias in node.names:
            if isinstance(node, ast.Import):
                name = alias.asname or alias.name.split(".")[0]
                path = alias.name if alias.asname else name
                try:
                    refs[name] = _module_ref(path)
                except _Denied:
                    refs[name] = _Ref("denied", f"`{path}` (the module `{path}`)")
            else:
                try:
                    base = _module_ref(node.module)
                    refs[alias.asname or alias.name] = _attribute_ref(base, alias.name) or _Ref("object", alias.name)
                except _Denied:
                    refs[alias.asname or alias.name] = _Ref("denied", f"`{node.module}.{alias.name}`")
    return refs


# --------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------


def _transform(source: str) -> str:
    """The source as IPython runs it: `%magic` and `!cmd` lines become get_ipython() calls."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:
        return source
    try:
        return TransformerManager().transform_cell(source)
    except Exception:
        return source


@lru_cache(maxsize=512)
def _screen(source: str) -> tuple[Violation, ...]:
    lines = source.splitlines()
    offset = 0
    while offset < len(lines) and not lines[offset].strip():
        offset += 1
    code = _transform(source)
    try:
        tree = compile(code, "<cell>", "exec", flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
                       dont_inherit=True)
    except (SyntaxError, ValueError, OverflowError):
        return ()  # the cell fails on its own when it runs
    except (RecursionError, MemoryError):
        return (_violation(1, "too-complex", "the parser gave up"),)
    try:
        return tuple(_Screen(tree, offset).run())
    except RecursionError:
        return (_violation(1, "too-complex", "the screen gave up"),)


def screen(source: str) -> list[Violation]:
    """Every answer rule the cell ``source`` breaks, in order of lines (an empty list for an honest cell).

    ``%magic`` and ``!command`` lines are first rewritten as IPython runs them
    (``get_ipython().run_line_magic(...)``). A cell that is not valid Python
    breaks no rule: it fails on its own when it runs.
    """
    return sorted(_screen(source), key=lambda v: v.line)


def explain(violations: Iterable[Violation]) -> str:
    """The violations as a message for the student, one line each ('' when there are none)."""
    violations = list(violations)
    if not violations:
        return ""
    count = len(violations)
    head = f"This cell breaks the course's answer rules ({count} problem{'s' if count > 1 else ''}):"
    return "\n".join([head, *(f"  {v.message}" for v in violations)])


def screen_notebook(nb: Mapping | str) -> dict[int, list[Violation]]:
    """{cell index: violations} for the code cells of a notebook (a path or a parsed notebook) a student may edit."""
    if isinstance(nb, str):
        import nbformat

        nb = nbformat.read(nb, as_version=4)
    found = {}
    for index, cell in enumerate(nb["cells"]):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell["cell_type"] != "code" or (meta.get("locked") and not meta.get("solution")):
            continue
        violations = screen(cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"]))
        if violations:
            found[index] = violations
    return found


def main(argv: list[str] | None = None) -> int:
    """``python -m course_lib.answer_rules notebook.ipynb ...``: print what the grader would refuse to run."""
    paths = sys.argv[1:] if argv is None else argv
    status = 0
    for path in paths:
        for index, violations in screen_notebook(path).items():
            status = 1
            print(f"{path}, cell {index}:\n{explain(violations)}")
    if status == 0:
        print("No cell breaks the answer rules.")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
