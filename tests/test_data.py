"""course_lib.data: deterministic, offline, and shaped as documented."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib import data


@pytest.mark.parametrize("make", [data.eight_gaussians, data.swiss_roll, data.two_moons])
def test_toy_data_is_deterministic_and_2d(make):
    a, b = make(500, seed=1), make(500, seed=1)
    assert a.shape == (500, 2) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, make(500, seed=2))


def test_gaussian_ring_sits_on_its_modes():
    x = data.gaussian_ring(4000, modes=8, radius=2.0, std=0.02)
    centers = data.ring_centers(8, 2.0)
    nearest = torch.cdist(x, centers).min(dim=1)
    assert nearest.values.max() < 0.02 * 6  # within 6 sigma
    counts = torch.bincount(nearest.indices, minlength=8)
    assert counts.min() > 400  # every mode is used, roughly equally (expected 500)
    assert torch.linalg.norm(centers, dim=1).allclose(torch.full((8,), 2.0))
    assert math.isclose(x.norm(dim=1).mean().item(), 2.0, abs_tol=0.01)


def test_toy_data_rejects_bad_n():
    with pytest.raises(ValueError, match="positive int"):
        data.swiss_roll(0)


def test_digits_in_range_and_split_is_a_partition():
    x, y = data.load_digits()
    assert x.shape == (1797, 1, 8, 8) and y.shape == (1797,)
    assert x.min() == -1.0 and x.max() == 1.0
    assert set(y.tolist()) == set(range(10))
    xt, yt = data.digits_split("train")
    xv, yv = data.digits_split("val")
    assert len(xt) + len(xv) == 1797 and len(xv) == round(0.2 * 1797)
    assert torch.equal(data.digits_split("val")[0], xv)  # deterministic
    # no image is in both (compare exact pixel rows; duplicates in the data set would show up here too)
    train_rows = {tuple(r) for r in xt.flatten(1).tolist()}
    overlap = sum(tuple(r) in train_rows for r in xv.flatten(1).tolist())
    assert overlap <= 2  # the digits set itself holds a couple of identical images


def test_random_batches():
    x = torch.arange(10.0)
    y = torch.arange(10)
    batches = data.random_batches(x, y, batch_size=4, seed=0)
    bx, by = next(batches)
    assert bx.shape == (4,) and torch.equal(bx.long(), by)
    with pytest.raises(ValueError, match="first dimension"):
        next(data.random_batches(x, torch.arange(3), batch_size=2))


def test_corpora_are_documents_split_by_document():
    for name, make in data.CORPORA.items():
        docs = make()
        names = [d.name for d in docs]
        assert len(names) == len(set(names))
        train = data.split_documents(docs, "train")
        val = data.split_documents(docs, "val")
        assert {d.name for d in train}.isdisjoint({d.name for d in val})
        assert len(train) + len(val) == len(docs)
        assert 0.03 < len(val) / len(docs) < 0.2, name
        assert data.text_corpus(name, "train") == "\n\n".join(d.text for d in train)


def test_corpus_sizes_are_as_documented():
    pre = data.text_corpus("docstrings", "all")
    fine = data.text_corpus("reference", "all")
    assert 1.0e6 < len(pre) < 3.0e6
    assert 0.3e6 < len(fine) < 0.7e6
    # The fine-tuning domain is not in the pre-training corpus.
    assert "pydoc_data" not in {d.name.split(".")[0] for d in data.docstring_documents()}


def test_split_does_not_depend_on_order_or_company():
    docs = list(data.reference_documents())
    val = {d.name for d in data.split_documents(docs, "val")}
    assert val == {d.name for d in data.split_documents(docs[::-1], "val")}
    assert val >= {d.name for d in data.split_documents(docs[:20], "val")}


def test_text_corpus_rejects_unknown_names():
    with pytest.raises(ValueError, match="docstrings"):
        data.text_corpus("shakespeare")


def test_random_windows_are_contiguous_slices():
    ids = torch.arange(100)
    windows = next(data.random_windows(ids, 8, batch_size=5, seed=3))
    assert windows.shape == (5, 8)
    assert torch.equal(windows[:, 1:] - windows[:, :-1], torch.ones(5, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="length"):
        next(data.random_windows(ids, 101, batch_size=1))


def test_docstring_corpus_cache_gives_the_same_documents_and_survives_corruption(tmp_path, monkeypatch):
    from course_lib import data

    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    stdlib, paths = data._stdlib_sources()
    extracted = tuple(data._extract_docstrings(stdlib, paths))  # straight from the sources, no cache
    data.docstring_documents.cache_clear()
    try:
        first = data.docstring_documents()  # extracts and writes the cache file
        files = list(tmp_path.glob("docstrings-*.json"))
        assert len(files) == 1
        data.docstring_documents.cache_clear()
        assert data.docstring_documents() == first == extracted  # read back from the file
        files[0].write_text("{ not json", encoding="utf-8")
        data.docstring_documents.cache_clear()
        assert data.docstring_documents() == extracted  # a broken file is replaced, not trusted
    finally:
        data.docstring_documents.cache_clear()


def test_docstring_corpus_cache_name_changes_with_the_sources(tmp_path, monkeypatch):
    from course_lib import data

    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    stdlib, paths = data._stdlib_sources()
    fewer = data._corpus_cache_file(stdlib, paths[:-1])
    assert data._corpus_cache_file(stdlib, paths) == data._corpus_cache_file(stdlib, list(paths))
    assert data._corpus_cache_file(stdlib, paths) != fewer
    assert fewer.parent == tmp_path


def test_package_paragraphs_are_labelled_by_package_and_split_per_paragraph():
    packages = ["email", "xml"]
    train_x, train_y = data.package_paragraphs(packages, "train")
    val_x, val_y = data.package_paragraphs(packages, "val")
    assert set(train_y) == set(val_y) == {0, 1}
    assert set(train_x).isdisjoint(val_x) and len(set(train_x)) == len(train_x)  # repeats dropped, never in both
    assert 0.12 < len(val_x) / (len(train_x) + len(val_x)) < 0.3
    assert all(len(t) >= 20 and "\n\n" not in t for t in train_x)
    # Each paragraph is in its package's docstrings, and only pre-training *train* modules are used.
    modules = {d.name: d.text for d in data.split_documents(data.docstring_documents(), "train")}
    text, label = train_x[0], train_y[0]
    assert any(name.split(".")[0] == packages[label] and text in doc for name, doc in modules.items())
    val_modules = data.split_documents(data.docstring_documents(), "val")
    only_in_val = [p for d in val_modules if d.name.startswith("email.") for p in d.text.split("\n\n")
                   if len(p) >= 20 and all(p not in t for t in modules.values())]
    assert only_in_val and not set(only_in_val) & (set(train_x) | set(val_x))
    few_x, few_y = data.package_paragraphs(packages, "train", per_class=30, seed=1)
    assert [few_y.count(c) for c in (0, 1)] == [30, 30] and set(few_x) <= set(train_x)
    assert few_x == data.package_paragraphs(packages, "train", per_class=30, seed=1)[0]
    assert few_x != data.package_paragraphs(packages, "train", per_class=30, seed=2)[0]
    with pytest.raises(ValueError, match="no docstrings from"):
        data.package_paragraphs(["email", "no_such_package"])
    with pytest.raises(ValueError, match="split"):
        data.package_paragraphs(packages, "test")
