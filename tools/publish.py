"""`make publish DIR=...`: write a student-only copy of the course.

The copy holds what a student needs and nothing a grader keeps secret:
``notebooks/`` (the nbgrader release: no solutions, no hidden tests),
``course_lib/``, the install files (``pyproject.toml``, ``environment.yml``,
``binder/``), a small Makefile (``make lab``, ``make doctor``) and a student
README. It never contains ``solutions/``, ``tests/`` (whose mistake tables
hold wrong answers next to the names of the right ones), ``tools/``, the
gradebook or any submission.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import links

ROOT = Path(__file__).resolve().parent.parent
COPIED = ["notebooks", "course_lib", "binder", "pyproject.toml", "environment.yml", "LICENSE"]
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", "*.egg-info")

STUDENT_MAKEFILE = """\
# genai-course (student copy): `make lab` installs what is missing and opens the course.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
LAB_ARGS ?=
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)
export PATH := $(BIN):$(PATH)

.PHONY: install lab doctor

$(STAMP): pyproject.toml
\ttest -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
\t$(BIN)/python -m pip install --quiet --upgrade pip
\t$(BIN)/python -m pip install --quiet $(TORCH)
\t$(BIN)/python -m pip install --quiet -e ".[dev]"
\ttouch $(STAMP)

install: $(STAMP)

lab: $(STAMP)
\t$(BIN)/jupyter lab --LabApp.default_url=/lab/tree/notebooks $(ALLOW_ROOT) $(LAB_ARGS)

doctor: $(STAMP)
\t$(BIN)/python -m course_lib doctor
"""


def student_readme(url: str) -> str:
    return f"""# genai-course

Learn generative AI by building it: GANs, diffusion, attention and
transformers, LLM pre-training and fine-tuning, in PyTorch notebooks that run
on a laptop CPU. Every exercise has a self-check that says what is wrong and why.

## Start

```bash
make lab     # creates .venv, installs the course, opens JupyterLab at notebooks/
make doctor  # one [OK]/[FAIL] line per requirement, for bug reports
```

Or open a notebook on Binder or Colab:

{links.readme_badges(url)}

In each notebook: read, replace `# YOUR CODE HERE` / `raise NotImplementedError()`
with your code (in a *Debug* section the cell holds a colleague's buggy code:
fix it), run the self-check below it, then the experiment. Before you
hand in: restart the kernel and run all cells (or press **Validate**).
"""


def publish(dest: Path, root: Path = ROOT) -> list[Path]:
    """Write the student copy to ``dest`` (which must not exist or be empty); return the files written."""
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise SystemExit(f"{dest} exists and is not empty: choose a new folder")
    if dest.resolve() == root.resolve() or root.resolve() in dest.resolve().parents:
        raise SystemExit("publish outside the course repository")
    dest.mkdir(parents=True, exist_ok=True)
    for item in COPIED:
        src = root / item
        if src.is_dir():
            shutil.copytree(src, dest / item, ignore=IGNORED)
        elif src.exists():
            shutil.copy2(src, dest / item)
    (dest / "Makefile").write_text(STUDENT_MAKEFILE, encoding="utf-8")
    (dest / "README.md").write_text(student_readme(links.repository_url(root)), encoding="utf-8")
    (dest / ".gitignore").write_text(".venv\n__pycache__/\n*.egg-info/\n.ipynb_checkpoints/\n", encoding="utf-8")
    return sorted(p for p in dest.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path)
    args = parser.parse_args(argv)
    files = publish(args.dest)
    print(f"wrote {len(files)} files to {args.dest} (student copy: no solutions, no hidden tests)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
