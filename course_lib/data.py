"""Data for every notebook, all made or found on this machine: nothing is downloaded.

- 2-D toy distributions (a ring of Gaussians, a Swiss roll, two moons) are generated
  from a seed, so the same call gives the same points everywhere.
- Images are scikit-learn's bundled 8x8 digits (1,797 of them), scaled to [-1, 1].
- Text comes from the Python installation itself: the standard library's
  docstrings (about 1.6 M characters, the broad *pre-training* corpus) and the
  language reference topics in ``pydoc_data.topics`` (about 0.46 M characters,
  the narrow *fine-tuning* domain). Splits are by document, never by character,
  so no document is in both train and validation.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import math
import os
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .env import cache_dir

# --------------------------------------------------------------------------
# 2-D toy distributions: (n, 2) float32 tensors
# --------------------------------------------------------------------------


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _check_n(n: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        raise ValueError(f"n must be a positive int, got {n!r}")


def ring_centers(modes: int = 8, radius: float = 2.0) -> torch.Tensor:
    """Centres of ``modes`` Gaussians evenly spaced on a circle: (modes, 2)."""
    angles = torch.arange(modes, dtype=torch.float32) * (2 * math.pi / modes)
    return radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)


def gaussian_ring(
    n: int, modes: int = 8, radius: float = 2.0, std: float = 0.02, seed: int = 0
) -> torch.Tensor:
    """``n`` points from an equal mixture of Gaussians on a ring: (n, 2).

    The classic GAN mode-collapse benchmark (eight modes, radius 2, std 0.02).
    """
    _check_n(n)
    if modes < 1:
        raise ValueError(f"modes must be at least 1, got {modes}")
    g = _generator(seed)
    which = torch.randint(modes, (n,), generator=g)
    noise = torch.randn(n, 2, generator=g) * std
    return ring_centers(modes, radius)[which] + noise


def eight_gaussians(n: int, std: float = 0.02, seed: int = 0) -> torch.Tensor:
    """The eight-Gaussians ring (radius 2): (n, 2)."""
    return gaussian_ring(n, modes=8, radius=2.0, std=std, seed=seed)


def swiss_roll(n: int, noise: float = 0.05, seed: int = 0) -> torch.Tensor:
    """A 2-D Swiss roll scaled to about [-1.5, 1.5]^2: (n, 2)."""
    _check_n(n)
    g = _generator(seed)
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=g))  # angle, 1.5 pi .. 4.5 pi
    points = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) / 10.0
    return points + noise * torch.randn(n, 2, generator=g)


def two_moons(n: int, noise: float = 0.05, seed: int = 0) -> torch.Tensor:
    """Two interleaved half circles, centred at the origin: (n, 2)."""
    _check_n(n)
    g = _generator(seed)
    upper = torch.rand(n, generator=g) < 0.5
    angle = math.pi * torch.rand(n, generator=g)
    x = torch.where(upper, torch.cos(angle), 1 - torch.cos(angle))
    y = torch.where(upper, torch.sin(angle), 0.5 - torch.sin(angle))
    points = torch.stack([x - 0.5, y - 0.25], dim=1)
    return points + noise * torch.randn(n, 2, generator=g)


# --------------------------------------------------------------------------
# Images: scikit-learn's 8x8 digits
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    return bunch.images.astype(np.float32), bunch.target.astype(np.int64)


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits: images ``(N, 1, 8, 8)`` in [-1, 1] and labels ``(N,)`` in 0..9.

    scikit-learn stores pixel intensities 0..16; we map them with ``x / 8 - 1``.
    """
    images, labels = _digits_arrays()
    x = torch.from_numpy(images.copy()).unsqueeze(1) / 8.0 - 1.0
    return x, torch.from_numpy(labels.copy())


def digits_split(
    split: str = "train", val_fraction: float = 0.2, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic train / val split of the digits (same seed, same split)."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    x, y = load_digits()
    order = torch.randperm(len(x), generator=_generator(seed))
    n_val = round(len(x) * val_fraction)
    idx = order[:n_val] if split == "val" else order[n_val:]
    return x[idx], y[idx]


def random_batches(
    *tensors: torch.Tensor, batch_size: int, seed: int = 0
) -> Iterator[tuple[torch.Tensor, ...]]:
    """An endless stream of random minibatches (sampled with replacement) from ``tensors``.

    All tensors must share their first dimension; each batch is a tuple with one
    ``(batch_size, ...)`` slice per tensor.
    """
    if not tensors:
        raise ValueError("random_batches needs at least one tensor")
    n = len(tensors[0])
    if any(len(t) != n for t in tensors):
        raise ValueError(f"tensors must share their first dimension, got {[len(t) for t in tensors]}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    g = _generator(seed)
    while True:
        idx = torch.randint(n, (batch_size,), generator=g)
        yield tuple(t[idx] for t in tensors)


def random_windows(ids: torch.Tensor, length: int, batch_size: int, seed: int = 0) -> Iterator[torch.Tensor]:
    """An endless stream of ``(batch_size, length)`` windows cut at random offsets from a 1-D id tensor.

    For language modelling: the model reads a window and predicts each next id inside it.
    """
    if ids.dim() != 1:
        raise ValueError(f"ids must be 1-D, got shape {tuple(ids.shape)}")
    if not 0 < length <= len(ids):
        raise ValueError(f"length must be in [1, {len(ids)}], got {length}")
    g = _generator(seed)
    offsets = torch.arange(length)
    while True:
        starts = torch.randint(len(ids) - length + 1, (batch_size, 1), generator=g)
        yield ids[starts + offsets]  # (batch_size, length)


# --------------------------------------------------------------------------
# Text: two corpora from the Python installation
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    """One unit of a text corpus: a stdlib module's docstrings, or one reference topic."""

    name: str
    text: str


# Test suites, the IDE and vendored packages are not prose; pydoc_data is the fine-tuning domain.
_SKIP_PARTS = {"test", "tests", "idlelib", "site-packages", "dist-packages", "lib2to3", "turtledemo", "pydoc_data"}


def _docstrings_of(source: str) -> list[str]:
    tree = ast.parse(source)
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, kinds):
            doc = ast.get_docstring(node, clean=True)
            if doc and doc.strip():
                found.append(doc.strip())
    return found


_CORPUS_FORMAT = 1  # bump when the extraction above changes: old cache files are then ignored


def _stdlib_sources() -> tuple[Path, list[Path]]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    paths = [p for p in sorted(stdlib.rglob("*.py")) if not _SKIP_PARTS.intersection(p.relative_to(stdlib).parts)]
    return stdlib, paths


def _extract_docstrings(stdlib: Path, paths: list[Path]) -> list[Document]:
    docs = []
    for path in paths:
        try:
            texts = _docstrings_of(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        if texts:
            docs.append(Document(".".join(path.relative_to(stdlib).with_suffix("").parts), "\n\n".join(texts)))
    return docs


def _corpus_cache_file(stdlib: Path, paths: list[Path]) -> Path:
    """A cache file named for everything the extraction depends on: Python, the sources' sizes and times."""
    key = hashlib.sha256(f"{_CORPUS_FORMAT} {sys.version} {stdlib} {sorted(_SKIP_PARTS)}".encode())
    for path in paths:
        stat = path.stat()
        key.update(f"{path.relative_to(stdlib)} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return cache_dir() / f"docstrings-{key.hexdigest()[:16]}.json"


@functools.lru_cache(maxsize=1)
def docstring_documents() -> tuple[Document, ...]:
    """One document per standard-library module: its docstrings joined by blank lines.

    Deterministic for a given Python version (files sorted by path; ``ast.walk``
    order within a file). Parsing the standard library takes a few seconds, so
    the result is kept in the course's cache folder (``env.cache_dir()``) under
    a name that changes whenever Python or any source file does. Raises
    ``RuntimeError`` when the installation ships no ``.py`` sources (some
    minimal Docker images strip them).
    """
    stdlib, paths = _stdlib_sources()
    cached = _corpus_cache_file(stdlib, paths)
    try:
        return tuple(Document(name, text) for name, text in json.loads(cached.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        pass  # no cache yet, or an unreadable one: extract again
    docs = _extract_docstrings(stdlib, paths)
    if not docs:
        raise RuntimeError(f"no standard-library sources found under {stdlib}")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps([[d.name, d.text] for d in docs]), encoding="utf-8")
        os.replace(partial, cached)  # atomic: a concurrent reader sees the whole file or none
    except OSError:
        pass  # a read-only home: fine, just slower next time
    return tuple(docs)


@functools.lru_cache(maxsize=1)
def reference_documents() -> tuple[Document, ...]:
    """One document per Python language reference topic (``pydoc_data.topics``)."""
    from pydoc_data.topics import topics

    return tuple(Document(name, topics[name].strip()) for name in sorted(topics))


CORPORA = {"docstrings": docstring_documents, "reference": reference_documents}


def is_validation(name: str, val_fraction: float = 0.1) -> bool:
    """Whether the document called ``name`` belongs to the validation split.

    Decided by a hash of the name alone, so the split does not depend on the
    order documents are listed in or on which other documents exist.
    """
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < val_fraction


def split_documents(
    documents: tuple[Document, ...] | list[Document], split: str, val_fraction: float = 0.1
) -> list[Document]:
    """The documents of one split: ``"train"``, ``"val"`` or ``"all"``."""
    if split not in ("train", "val", "all"):
        raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if split == "all":
        return list(documents)
    want_val = split == "val"
    return [d for d in documents if is_validation(d.name, val_fraction) == want_val]


def text_corpus(name: str, split: str = "train", val_fraction: float = 0.1) -> str:
    """A corpus as one string: the split's documents joined by blank lines.

    ``name`` is ``"docstrings"`` (pre-training) or ``"reference"`` (fine-tuning).
    """
    if name not in CORPORA:
        raise ValueError(f"corpus must be one of {sorted(CORPORA)}, got {name!r}")
    docs = split_documents(CORPORA[name](), split, val_fraction)
    return "\n\n".join(d.text for d in docs)


def package_paragraphs(
    packages: list[str] | tuple[str, ...],
    split: str = "train",
    per_class: int | None = None,
    seed: int = 0,
    min_chars: int = 20,
    val_fraction: float = 0.2,
) -> tuple[list[str], list[int]]:
    """A labelled task for notebook 06: which standard-library package does a docstring paragraph come from?

    Examples are the paragraphs (blank-line separated, at least ``min_chars``
    characters) of the docstrings of the pre-training corpus's *train* modules
    whose top-level package is one of ``packages`` (``"email"`` covers
    ``email.message``, ``email.utils``...); the label is the package's index in
    ``packages``. ``split`` ("train" or "val") is decided per paragraph by a hash
    of its text, so both splits draw from every package and a paragraph that
    occurs twice (a copied docstring) lands in one split only; repeats are
    dropped, first occurrence kept. The pre-training validation modules are
    left out, so they stay unseen by every model. With ``per_class``, at most
    that many examples of each package, drawn at random (``seed``), in corpus
    order. Returns ``(texts, labels)``.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if len(set(packages)) != len(packages) or not packages:
        raise ValueError(f"packages must be distinct names, got {list(packages)}")
    known = {d.name.split(".")[0] for d in docstring_documents()}
    missing = [p for p in packages if p not in known]
    if missing:
        raise ValueError(f"no docstrings from {missing} in this Python's standard library")
    texts, labels, seen = [], [], set()
    for doc in split_documents(docstring_documents(), "train"):
        package = doc.name.split(".")[0]
        if package not in packages:
            continue
        for paragraph in doc.text.split("\n\n"):
            paragraph = paragraph.strip()
            if len(paragraph) < min_chars or paragraph in seen:
                continue
            seen.add(paragraph)
            if is_validation(paragraph, val_fraction) == (split == "val"):
                texts.append(paragraph)
                labels.append(packages.index(package))
    if per_class is not None:
        g = _generator(seed)
        by_class = torch.tensor(labels, dtype=torch.long)
        keep = []
        for c in range(len(packages)):
            members = (by_class == c).nonzero().flatten()
            keep += members[torch.randperm(len(members), generator=g)[:per_class]].tolist()
        keep.sort()
        texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    return texts, labels
