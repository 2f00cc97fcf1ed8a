"""Generate repository links from the one place they live: pyproject's [project.urls] Repository.

Rewrites, in place:
- README.md: the badge table between ``<!-- badges -->`` and ``<!-- /badges -->``;
- solutions/*/*.ipynb: each notebook's Colab/Binder badges (same markers, in the
  title cell) and the ``pip install "genai-course @ git+URL"`` line of its setup cell.

``python tools/links.py`` writes; ``python tools/links.py --check`` exits 1 and
lists the files that would change. Run ``make release`` afterwards so that
``notebooks/`` follows ``solutions/``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat
import tomllib

ROOT = Path(__file__).resolve().parent.parent
BRANCH = "main"
BADGES = re.compile(r"(<!-- badges[^>]*-->)(.*?)(<!-- /badges -->)", re.S)
INSTALL = re.compile(r'"genai-course @ git\+[^"]*"')


def repository_url(root: Path = ROOT) -> str:
    data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    url = data["project"]["urls"]["Repository"].rstrip("/")
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
        raise SystemExit(f"Repository URL must look like https://github.com/OWNER/NAME, got {url!r}")
    return url


def slug(url: str) -> str:
    """'https://github.com/owner/name' -> 'owner/name'."""
    return url.removeprefix("https://github.com/")


def colab_url(url: str, path: str) -> str:
    return f"https://colab.research.google.com/github/{slug(url)}/blob/{BRANCH}/{path}"


def binder_url(url: str, path: str) -> str:
    return f"https://mybinder.org/v2/gh/{slug(url)}/{BRANCH}?urlpath=lab/tree/{path}"


COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
BINDER_BADGE = "https://mybinder.org/badge_logo.svg"


def notebook_badges(url: str, release_path: str) -> str:
    return (
        f"[![Open in Colab]({COLAB_BADGE})]({colab_url(url, release_path)}) "
        f"[![Binder]({BINDER_BADGE})]({binder_url(url, release_path)})"
    )


def release_notebooks(root: Path = ROOT) -> list[str]:
    """Release paths (relative to the repo) of every solutions notebook, in course order."""
    return [
        str(Path("notebooks") / p.relative_to(root / "solutions"))
        for p in sorted((root / "solutions").glob("*/*.ipynb"))
    ]


def readme_badges(url: str, root: Path = ROOT) -> str:
    rows = ["| notebook | open |", "|---|---|"]
    for path in release_notebooks(root):
        rows.append(f"| `{path}` | {notebook_badges(url, path)} |")
    return "\n".join(rows)


def _replace_badges(text: str, badges: str, where: str) -> str:
    if not BADGES.search(text):
        raise SystemExit(f"{where}: no '<!-- badges -->' ... '<!-- /badges -->' markers")
    return BADGES.sub(lambda m: f"{m.group(1)}\n{badges}\n{m.group(3)}", text, count=1)


def updated_files(root: Path = ROOT) -> dict[Path, str]:
    """Every file whose generated links are out of date -> its new text."""
    url = repository_url(root)
    changes: dict[Path, str] = {}
    readme = root / "README.md"
    text = readme.read_text(encoding="utf-8")
    new = _replace_badges(text, readme_badges(url, root), "README.md")
    if new != text:
        changes[readme] = new
    for path in sorted((root / "solutions").glob("*/*.ipynb")):
        raw = path.read_text(encoding="utf-8")
        nb = nbformat.reads(raw, as_version=4)
        release_path = str(Path("notebooks") / path.relative_to(root / "solutions"))
        install = f'"genai-course @ git+{url}"'
        found_badges = found_install = False
        for cell in nb.cells:
            if cell.cell_type == "markdown" and BADGES.search(cell.source) and not found_badges:
                cell.source = _replace_badges(cell.source, notebook_badges(url, release_path), str(path))
                found_badges = True
            if cell.cell_type == "code" and INSTALL.search(cell.source):
                cell.source = INSTALL.sub(install, cell.source)
                found_install = True
        if not (found_badges and found_install):
            raise SystemExit(f"{path}: needs a badges marker in a markdown cell and a setup cell "
                             'installing "genai-course @ git+URL"')
        new = nbformat.writes(nb)
        new += "" if new.endswith("\n") else "\n"
        if new != raw:
            changes[path] = new
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report out-of-date files, write nothing")
    args = parser.parse_args(argv)
    changes = updated_files()
    for path in changes:
        print(f"{'out of date' if args.check else 'updated'}: {path.relative_to(ROOT)}")
        if not args.check:
            path.write_text(changes[path], encoding="utf-8")
    if args.check and changes:
        print("run `make links release` to regenerate them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
