"""Install paths agree: pyproject.toml, environment.yml (Binder), binder/postBuild, Makefile, README, CI."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml
from envtools import borrowing_env
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject_requirements() -> dict[str, Requirement]:
    reqs = PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["dev"]
    return {_canonical(r.name): r for r in map(Requirement, reqs)}


def _environment_requirements() -> tuple[dict[str, Requirement], list[str]]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    found, pip_options = {}, []
    for item in env["dependencies"]:
        if isinstance(item, dict):
            for line in item["pip"]:
                if line.startswith("-"):
                    pip_options.append(line)
                else:
                    req = Requirement(line)
                    found[_canonical(req.name)] = req
        elif item != "pip" and not item.startswith("python="):
            req = Requirement(item)  # our conda specs use pip syntax: name>=x,<y
            found[_canonical(req.name)] = req
    return found, pip_options


def test_environment_yml_has_the_same_packages_and_ranges_as_pyproject():
    wanted = _pyproject_requirements()
    have, _ = _environment_requirements()
    assert set(have) == set(wanted), (set(wanted) - set(have), set(have) - set(wanted))
    for name, req in wanted.items():
        assert have[name].specifier == req.specifier, (name, str(req.specifier), str(have[name].specifier))


def test_environment_yml_takes_cpu_torch():
    have, pip_options = _environment_requirements()
    assert "torch" in have
    assert any("download.pytorch.org/whl/cpu" in option for option in pip_options)


def test_torch_is_a_range_in_the_package_and_pinned_only_in_the_cpu_install_path():
    torch_req = _pyproject_requirements()["torch"]
    assert not any(spec.operator == "==" for spec in torch_req.specifier), "Colab brings its own torch"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^TORCH \?= torch==2\.13\.0$", makefile, re.M), "the Makefile's TORCH default"
    assert makefile.index("$(TORCH)") < makefile.index('-e ".[dev]"'), "torch must be installed before the course"


def test_ci_and_readme_run_the_same_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme
    makefile = (ROOT / "Makefile").read_text()
    # `make test` installs first: the course (STAMP), the Debian packages grading needs (GRADING_STAMP) and the
    # external oracles of the hf extra (TEST_STAMP), so that the tests comparing with them run.
    assert re.search(r"^test: \$\(TEST_STAMP\)$", makefile, re.M) and "--nbval-lax" in makefile
    assert re.search(r"^\$\(TEST_STAMP\): \$\(GRADING_STAMP\)", makefile, re.M)
    assert re.search(r"^\t.*pip install .*-e \"\.\[dev,hf\]\"$", makefile, re.M)
    assert re.search(r"^\$\(GRADING_STAMP\): \$\(STAMP\)$", makefile, re.M)


def test_hf_extra_is_optional():
    assert "hf" in PYPROJECT["project"]["optional-dependencies"]
    assert not any("transformers" in d for d in PYPROJECT["project"]["dependencies"])


@pytest.mark.slow
def test_postbuild_is_idempotent_and_hides_only_the_instructor_tools(tmp_path):
    """Run binder/postBuild twice in a throw-away environment that borrows this one's packages."""
    env = tmp_path / "env"
    borrowing_env(env)
    # What installing nbgrader into a real environment puts in its config folder.
    shutil.copytree(Path(sys.prefix) / "etc" / "jupyter", env / "etc" / "jupyter")
    repo = tmp_path / "repo"
    shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(".venv", "grading", ".git", "*.egg-info"))
    run_env = {**os.environ, "PATH": f"{env / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    for _ in range(2):
        proc = subprocess.run(["bash", "binder/postBuild"], cwd=repo, env=run_env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Validation failed" not in proc.stderr + proc.stdout
    page = json.loads((env / "etc" / "jupyter" / "labconfig" / "page_config.json").read_text())
    disabled = {k for k, v in page["disabledExtensions"].items() if v}
    assert {"@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment"} <= disabled
    assert "@jupyter/nbgrader:validate-assignment" not in disabled
    # JupyterLab's settings defaults: no news pop-up over the first notebook
    overrides = json.loads((env / "share" / "jupyter" / "lab" / "settings" / "overrides.json").read_text())
    assert overrides["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"
    listing = subprocess.run(
        [str(env / "bin" / "python"), "-m", "jupyter_server.extension.serverextension", "list"],
        cwd=repo, env=run_env, capture_output=True, text=True,
    )
    text = re.sub(r"\x1b\[[0-9;]*m", "", listing.stdout + listing.stderr)
    assert re.search(r"nbgrader\.server_extensions\.formgrader disabled", text), text
    assert re.search(r"nbgrader\.server_extensions\.validate_assignment enabled", text), text
    installed = subprocess.run([str(env / "bin" / "python"), "-c", "import course_lib; print(course_lib.__file__)"],
                               cwd=tmp_path, env=run_env, capture_output=True, text=True)
    assert str(repo) in installed.stdout, installed.stderr
