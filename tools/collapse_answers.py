"""Collapse the explanation that answers a predict-then-run question, so reading ahead does not give it away.

A prediction question (an answer cell ``predict_<name>``) comes before an
experiment; the markdown cell after that experiment explains what happened and
names the right choice. Students who scroll past the experiment before they
answer (the fresh-student trials did) read the answer. This tool wraps each
such explanation cell in a collapsed ``<details>`` block, in the notebook's
percent-format source (``sources/``), once::

    python tools/collapse_answers.py sources/*/*.py   # then tools/nbsource.py build ... and `make release`

The explanation cell is the first markdown cell after the first code cell that
follows the prediction's test cell. A cell already collapsed is left alone.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

SUMMARY = "Run the experiment first, then open: what it shows, and the answer to the prediction"
OPEN = f"# <details><summary>{SUMMARY}</summary>\n#\n"
CLOSE = "#\n# </details>\n"


def collapse(text: str) -> tuple[str, list[str]]:
    """The source with every prediction's explanation cell collapsed, and the ids of the cells it changed."""
    cells = re.split(r"(?m)^(?=# %%)", text)
    changed = []
    for i, cell in enumerate(cells):
        if not re.match(r'# %% id="[^"]*" nbgrader=\{[^\n]*"grade_id": "test_predict_', cell):
            continue
        j = i + 1
        while j < len(cells) and cells[j].startswith("# %% [markdown]"):
            j += 1  # markdown between the test and the experiment
        while j < len(cells) and not cells[j].startswith("# %% [markdown]"):
            j += 1  # the experiment's code cells
        if j == len(cells) or "<details><summary>" + SUMMARY in cells[j]:
            continue
        header, _, body = cells[j].partition("\n")
        body = body.rstrip("\n")
        cells[j] = f"{header}\n{OPEN}{body}\n{CLOSE}\n"
        changed.append(re.search(r'id="([^"]+)"', header).group(1))
    return "".join(cells), changed


def main(paths: list[str]) -> int:
    for path in map(Path, paths):
        text, changed = collapse(path.read_text(encoding="utf-8"))
        if changed:
            path.write_text(text, encoding="utf-8")
            print(f"{path}: collapsed {', '.join(changed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
