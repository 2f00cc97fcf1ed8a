"""Mark the experiment cells of the course notebooks, the cells grading may skip.

An *experiment* is a code cell without nbgrader metadata (neither answer, test
nor read-only) that no later answer, test or read-only cell depends on,
directly or through other cells that must run: it binds no name they read,
changes no object they use (training a model a test inspects, setting an
attribute, calling a method on it), does not seed or draw from the global
random generator before a cell that draws from it, and changes no global
setting. The analysis itself lives in :mod:`course_lib.autograde.grading_mode`
(``analyse``: per code cell the names it binds, the names it reads, what it may
change), because the grading preprocessor re-runs it on each submission.

    python tools/experiments.py --tag solutions/*/*.ipynb    # add / remove the `experiment` tag, then `make release`
    python tools/experiments.py --check                      # exit 1 when a tag is missing or wrong
    python tools/experiments.py --report                     # per notebook: what is skipped, what must run and why

Only the tags change: cell ids, sources and the notebooks' JSON layout stay as
they are (outputs are stripped).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from course_lib.autograde.grading_mode import (  # noqa: E402 - after the path set-up
    TAG,
    Analysis,
    analyse,
    cell_kind,
    undeclared_dependencies,
)

__all__ = ["TAG", "Analysis", "analyse", "cell_kind", "main", "retag", "report", "undeclared_dependencies"]


def solutions(root: Path = ROOT) -> list[Path]:
    return sorted((root / "solutions").glob("*/*.ipynb"))


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def serialise(nb: nbformat.NotebookNode) -> str:
    """The notebook as the repository stores it (nbformat's layout, one trailing newline)."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def retag(nb: nbformat.NotebookNode) -> list[str]:
    """Set the ``experiment`` tag on exactly the cells that qualify; returns what changed."""
    experiments = {info.index for info in analyse(nb.cells).experiments}
    changed = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        tags = list(cell.metadata.get("tags", []))
        want = cell.cell_type == "code" and index in experiments
        if want and TAG not in tags:
            cell.metadata["tags"] = [*tags, TAG]
            changed.append(f"+ {cell.get('id', index)}")
        elif not want and TAG in tags:
            rest = [tag for tag in tags if tag != TAG]
            if rest:
                cell.metadata["tags"] = rest
            else:
                del cell.metadata["tags"]
            changed.append(f"- {cell.get('id', index)}")
    return changed


def report(path: Path, nb: nbformat.NotebookNode | None = None) -> str:
    """What grading skips in one notebook, and which ungraded cells must still run, and why."""
    nb = read(path) if nb is None else nb
    analysis = analyse(nb.cells)
    code = len(analysis.cells)
    experiments = analysis.experiments
    must_run = analysis.must_run
    try:
        name = path.resolve().relative_to(ROOT)
    except ValueError:
        name = path
    lines = [f"{name}: {len(experiments)} of {code} code cells are experiments; "
             f"{len(must_run)} other ungraded cell(s) must still run"]
    lines.append("  experiments (skipped while grading): " + (", ".join(i.label for i in experiments) or "none"))
    for info, reasons in must_run:
        lines.append(f"  must run: {info.label}")
        for reason in reasons[:6]:
            lines.append(f"      {reason}")
        if len(reasons) > 6:
            lines.append(f"      ... and {len(reasons) - 6} more")
    for info in analysis.cells:
        if info.opaque and not info.kind:
            lines.append(f"  opaque (never skipped): {info.label}: {info.opaque}")
    readers = [info.label for info in analysis.cells if info.kind and analysis.reads_rng(info)]
    if readers:
        lines.append("  graded cells that draw from the global random generator before seeding it "
                     f"(every earlier cell that seeds or draws from it must run): {', '.join(readers)}")
    skipped = {info.index for info in experiments}
    wrong = [info.label for info in analysis.cells if info.tagged != (info.index in skipped) and not info.kind]
    if wrong:
        lines.append(f"  tags out of date on: {', '.join(wrong)} (run `python tools/experiments.py --tag`)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--tag", action="store_true", help="add / remove the experiment tag and write the notebooks")
    action.add_argument("--check", action="store_true", help="exit 1 when a tag is missing or wrong; write nothing")
    action.add_argument("--report", action="store_true", help="print what is skipped and what must still run")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: solutions/*/*.ipynb")
    args = parser.parse_args(argv)
    paths = args.notebooks or solutions()
    status = 0
    for path in paths:
        if args.report:
            print(report(path))
            continue
        raw = path.read_text(encoding="utf-8")
        nb = nbformat.reads(raw, as_version=4)
        if args.check:
            problems = undeclared_dependencies(nb.cells)
            for problem in problems:
                print(f"{path}: {problem}")
            status |= bool(problems)
            continue
        changes = retag(nb)
        new = serialise(nb)
        if new != raw:
            path.write_text(new, encoding="utf-8")
        print(f"{path}: " + (", ".join(changes) if changes else "tags up to date"))
    if args.check and status:
        print("run `python tools/experiments.py --tag solutions/*/*.ipynb` and `make release`", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
