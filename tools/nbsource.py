"""The solutions notebooks as Python source you can diff, review and edit: ``sources/<assignment>/<name>.py``.

Each ``solutions/<assignment>/<name>.ipynb`` has a twin in ``sources/`` in the
*percent* format that VS Code, PyCharm, Spyder and jupytext read as cells::

    # notebook: {"metadata": {...}, "nbformat": 4, "nbformat_minor": 5}

    # %% [markdown] id="heads-intro"
    # ## Exercise 3 · Multi-head attention
    #
    # One attention computes ...

    # %% id="split_heads" nbgrader={"grade": false, "grade_id": "split_heads", ...}
    def split_heads(x, num_heads):
        ...

A cell is a ``# %%`` line (with ``[markdown]`` for text, then the cell id and
its metadata as ``key=<JSON>``), its source (markdown lines commented with
``# ``), and one blank line. The conversion is exact both ways: building a
notebook from its source gives the committed ``.ipynb`` byte for byte
(``tests/test_nbsource.py`` checks every notebook, and that the two are in
sync). The twin lives outside ``solutions/`` because ``nbgrader
generate_assignment`` copies every file of a source folder into the student
release.

    python tools/nbsource.py export   # .ipynb -> .py, after editing a notebook in JupyterLab
    python tools/nbsource.py build    # .py -> .ipynb, after editing the source (then `make release`)
    python tools/nbsource.py sync     # whichever of a differing pair was modified last wins (`make release` runs it)
    python tools/nbsource.py check    # exit 1, naming the files, when a pair differs

Each command takes notebook or source paths; by default, every solutions notebook.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
SOURCES = ROOT / "sources"
MARKER = "# %%"
HEADER = "# notebook: "
KINDS = {"code": "", "markdown": " [markdown]", "raw": " [raw]"}


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _comment(text: str) -> str:
    return "\n".join(f"# {line}" if line else "#" for line in text.split("\n"))


def _uncomment(text: str) -> str:
    lines = text.split("\n")
    bad = [line for line in lines if line != "#" and not line.startswith("# ")]
    if bad:
        raise ValueError(f"a markdown line must start with '# ' (or be '#'): {bad[0]!r}")
    return "\n".join(line[2:] for line in lines)


def export(nb: nbformat.NotebookNode) -> str:
    """A notebook (outputs stripped, every cell with an id) -> its percent-format source."""
    head = {"metadata": nb.metadata, "nbformat": nb.nbformat, "nbformat_minor": nb.nbformat_minor}
    parts = [HEADER + _json(head)]
    for cell in nb.cells:
        if cell.get("outputs") or cell.get("attachments"):
            raise ValueError(f"cell {cell.get('id')!r}: strip outputs and attachments first")
        line = f"{MARKER}{KINDS[cell.cell_type]} id={_json(cell.id)}"
        line += "".join(f" {key}={_json(value)}" for key, value in cell.metadata.items())
        body = _comment(cell.source) if cell.cell_type == "markdown" else cell.source
        if any(row.startswith(MARKER) for row in body.split("\n")):
            raise ValueError(f"cell {cell.id!r}: a line of its source starts with {MARKER!r}")
        parts.append(f"{line}\n{body}")
    return "\n\n".join(parts) + "\n"


def _parse_marker(line: str) -> tuple[str, str, dict]:
    """'# %% [markdown] id="x" tags=["a"]' -> ("markdown", "x", {"tags": ["a"]})."""
    rest = line[len(MARKER):]
    kind = "code"
    for name, tag in KINDS.items():
        if tag and rest.startswith(tag):
            kind, rest = name, rest[len(tag):]
    decoder = json.JSONDecoder()
    fields: dict = {}
    while rest.strip():
        if not rest.startswith(" ") or "=" not in rest:
            raise ValueError(f"cannot read the cell marker {line!r}")
        key, _, rest = rest[1:].partition("=")
        fields[key], end = decoder.raw_decode(rest)
        rest = rest[end:]
    if "id" not in fields:
        raise ValueError(f"a cell marker needs an id: {line!r}")
    cell_id = fields.pop("id")
    return kind, cell_id, fields


def build(text: str) -> nbformat.NotebookNode:
    """A percent-format source -> the notebook (the inverse of :func:`export`)."""
    if not text.startswith(HEADER) or not text.endswith("\n"):
        raise ValueError(f"a notebook source starts with {HEADER!r} and ends with a newline")
    first, _, rest = text[:-1].partition("\n")
    head = json.loads(first[len(HEADER):])
    nb = nbformat.v4.new_notebook(metadata=head["metadata"])
    nb.nbformat, nb.nbformat_minor = head["nbformat"], head["nbformat_minor"]
    chunks = ("\n" + rest).split("\n\n" + MARKER)[1:] if rest else []
    for chunk in chunks:
        line, _, body = (MARKER + chunk).partition("\n")
        kind, cell_id, metadata = _parse_marker(line)
        if kind == "markdown":
            cell = nbformat.v4.new_markdown_cell(_uncomment(body))
        elif kind == "raw":
            cell = nbformat.v4.new_raw_cell(body)
        else:
            cell = nbformat.v4.new_code_cell(body)
        cell.id, cell.metadata = cell_id, nbformat.from_dict(metadata)
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def source_of(notebook: Path) -> Path:
    return SOURCES / notebook.resolve().relative_to(SOLUTIONS).with_suffix(".py")


def notebook_of(source: Path) -> Path:
    return SOLUTIONS / source.resolve().relative_to(SOURCES).with_suffix(".ipynb")


def notebook_text(nb: nbformat.NotebookNode) -> str:
    """What nbformat.write puts in the file (the course's notebooks are written that way)."""
    return nbformat.writes(nb) + "\n"


def pairs(paths: list[str]) -> list[tuple[Path, Path]]:
    """(notebook, source) for the given notebooks or sources; every solutions notebook by default."""
    if not paths:
        return [(nb, source_of(nb)) for nb in sorted(SOLUTIONS.glob("*/*.ipynb"))]
    found = []
    for raw in paths:
        path = Path(raw).resolve()
        found.append((path, source_of(path)) if path.suffix == ".ipynb" else (notebook_of(path), path))
    return found


def out_of_sync(notebook: Path, source: Path) -> str:
    """'' when the pair agrees, else why not."""
    if not source.exists():
        return f"{source.relative_to(ROOT)} is missing (run `python tools/nbsource.py export`)"
    if not notebook.exists():
        return f"{notebook.relative_to(ROOT)} is missing (run `python tools/nbsource.py build`)"
    if export(nbformat.read(notebook, as_version=4)) != source.read_text(encoding="utf-8"):
        return (f"{notebook.relative_to(ROOT)} and {source.relative_to(ROOT)} differ: run `python tools/nbsource.py "
                "export` after editing the notebook, or `build` after editing the source")
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["export", "build", "sync", "check"])
    parser.add_argument("paths", nargs="*", help="notebooks or sources (default: every solutions notebook)")
    args = parser.parse_args(argv)
    problems = []
    for notebook, source in pairs(args.paths):
        command = args.command
        if command == "sync":
            if not out_of_sync(notebook, source):
                continue
            edited_last = source.exists() and (
                not notebook.exists() or source.stat().st_mtime > notebook.stat().st_mtime
            )
            command = "build" if edited_last else "export"
        if command == "export":
            source.parent.mkdir(parents=True, exist_ok=True)
            source.write_text(export(nbformat.read(notebook, as_version=4)), encoding="utf-8")
            print(f"{notebook.relative_to(ROOT)} -> {source.relative_to(ROOT)}")
        elif command == "build":
            notebook.parent.mkdir(parents=True, exist_ok=True)
            notebook.write_text(notebook_text(build(source.read_text(encoding="utf-8"))), encoding="utf-8")
            print(f"{source.relative_to(ROOT)} -> {notebook.relative_to(ROOT)} (now run `make release`)")
        elif why := out_of_sync(notebook, source):
            problems.append(why)
    for why in problems:
        print(why, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
