"""Plant one break per guarantee of the test suite and show that the suite catches each.

Each entry below breaks one behaviour the suite promises (a check that no
longer catches a mistake, grading that stops at a bad submission, a sandbox
with a network, ...) by a one-line edit, in a throw-away clone of the
committed course, and runs the tests that guard it there. The break is
*caught* when those tests fail. A table is printed (markdown, for a closing
note or a review), and the exit status is 1 if any break went unnoticed.

    python tools/planted_breaks.py                 # every break (about 15 minutes on 2 cores)
    python tools/planted_breaks.py --only loop,leak
    python tools/planted_breaks.py --list

The clone uses this checkout's virtual environment, with ``PYTHONPATH``
pointing at the clone so that its (broken) ``course_lib`` is the one imported,
by pytest, nbgrader's workers and the sandboxed kernels alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
ROUND_TRIP = "tests/test_roundtrip.py::TestRoundTrip_00_welcome"


@dataclass
class Break:
    key: str
    guarantee: str  # what the suite promises
    planted: str  # what the break does, in words
    path: str  # file edited, relative to the repository
    old: str  # text replaced (must occur exactly once), or "" for a notebook edit (see `edit_notebook`)
    new: str
    tests: list[str]  # pytest node ids that must fail
    notebook_cell: str = ""  # for notebook edits: the cell id whose source gets `new` appended
    browser: bool = False  # needs `make test-browser`'s chromium


BREAKS = [
    Break("mistake-points", "each mistake submission loses exactly its points",
          "the checks stop comparing float tensors' values (only type and shape)",
          "course_lib/grading.py", "        reason = _difference(tensor, expected, atol, rtol)\n",
          "        reason = None\n",
          [f"{ROUND_TRIP}::test_each_mistake_loses_exactly_its_tests"]),
    Break("likely-cause", "a known mistake's failure message names its catalogue entry",
          "check_function stops naming the likely cause (the catalogue is never consulted)",
          "course_lib/grading.py",
          "        cause = _likely_cause(actual, expected, case, mistakes or {}, atol, rtol)\n",
          "        cause = None\n",
          [f"{ROUND_TRIP}::test_each_known_mistake_is_named_as_the_likely_cause"]),
    Break("agreement", "the in-process path agrees with nbgrader on a real batch",
          "the in-process runner drops error outputs (a failing test cell would score)",
          "tools/inprocess.py", 'cell.outputs = [nbformat.from_dict(o) for o in cell_outputs]',
          'cell.outputs = [nbformat.from_dict(o) for o in cell_outputs if o["output_type"] != "error"]',
          [f"{ROUND_TRIP}::test_in_process_scores_equal_nbgrader_scores"]),
    Break("nbval", "every solutions notebook runs end to end (nbval, FAST mode)",
          "an experiment cell of the welcome notebook raises",
          "solutions/00_welcome/welcome.ipynb", "", "\nraise RuntimeError('planted')\n",
          ["solutions/00_welcome/welcome.ipynb"], notebook_cell="softmax-temperature"),
    Break("validator", "nbgrader's Validator (grading mode) passes every solutions notebook",
          "the welcome notebook's softmax answer returns its input",
          "solutions/00_welcome/welcome.ipynb", "", "\nsoftmax = lambda x, *args, **kwargs: x\n",
          ["tests/test_release.py::test_validator_passes_solutions[00_welcome/welcome.ipynb]"],
          notebook_cell="softmax"),
    Break("nbsource", "each solutions notebook's percent-format source (sources/) is in sync",
          "a solutions markdown cell edited without `tools/nbsource.py export`",
          "solutions/00_welcome/welcome.ipynb", "", "\n\nAn edit nobody exported.\n",
          ["tests/test_nbsource.py::test_every_solutions_notebook_has_its_source_in_sync[00_welcome/welcome.ipynb]"],
          notebook_cell="grading"),
    Break("drift", "notebooks/ is exactly a fresh release of solutions/",
          "a solutions markdown cell edited without `make release`",
          "solutions/00_welcome/welcome.ipynb", "", "\n\nAn edit nobody released.\n",
          ["tests/test_release.py::test_release_has_no_drift"], notebook_cell="grading"),
    Break("leak", "no solution or hidden-test text in the student release",
          "the release's softmax stub replaced by the solution",
          "notebooks/00_welcome/welcome.ipynb", "", "",
          ["tests/test_release.py::test_no_solution_or_hidden_test_text_in_release"],
          notebook_cell="softmax"),
    Break("loop", "an infinite loop times out and the later cells still run",
          "the timed-out cell is no longer interrupted (nbgrader stops the notebook)",
          "nbgrader_config.py", "c.Execute.interrupt_on_timeout = True", "c.Execute.interrupt_on_timeout = False",
          [f"{ROUND_TRIP}::test_infinite_loop_times_out_and_later_cells_still_run"]),
    Break("crash", "a kernel that dies scores 0, is flagged, and the batch goes on",
          "a dead kernel is no longer recognised as one",
          "course_lib/autograde/batch.py",
          'if "DeadKernelError" in text or "Kernel died" in text or "kernel died" in text:',
          'if False:',
          ["tests/test_adversarial.py::test_kernel_crash_scores_zero_is_flagged_and_the_batch_goes_on"]),
    Break("invalid-json", "invalid JSON is reported and the others are graded",
          "a failed submission is no longer recorded as failed",
          "course_lib/autograde/batch.py", '    result.status = "failed"\n', '    result.status = "graded"\n',
          [f"{ROUND_TRIP}::test_invalid_json_is_reported_and_others_are_graded"]),
    Break("edited-test", "an edited read-only test cell is graded with the original",
          "nbgrader's OverwriteCells left out of the sanitize preprocessors",
          "nbgrader_config.py", '    "nbgrader.preprocessors.OverwriteCells",\n', "",
          [f"{ROUND_TRIP}::test_edited_read_only_test_cell_is_graded_with_the_original"]),
    Break("regrade", "a forced regrade grades again and gives the same scores",
          "`force` ignored: already graded students are skipped",
          "course_lib/autograde/batch.py", "    done = {} if force else finished(db, assignment)\n",
          "    done = finished(db, assignment)\n",
          [f"{ROUND_TRIP}::test_regrading_gives_the_same_scores"]),
    Break("immutable", "grading never modifies a submitted file",
          "the grading worker appends a byte to each submitted notebook after grading it",
          "course_lib/autograde/batch.py",
          '        result = api.autograde(job["assignment"], job["student"], force=True, create=True)\n',
          '        result = api.autograde(job["assignment"], job["student"], force=True, create=True)\n'
          '        for _nb in Path(root, "grading", "submitted", job["student"], job["assignment"]).glob("*.ipynb"):\n'
          '            _nb.write_bytes(_nb.read_bytes() + b" ")\n',
          [f"{ROUND_TRIP}::test_grading_never_modifies_submissions"]),
    Break("cheat", "a cheating submission scores 0 and is flagged",
          "the answer rules no longer refuse get_ipython",
          "course_lib/answer_rules.py", '    "get_ipython": ("ipython", "get_ipython"),\n', "",
          ["tests/test_adversarial.py::test_each_cheat_scores_zero_and_is_flagged"]),
    Break("sandbox", "the sandbox contains harm: no network, nothing outside it touched",
          "the kernel keeps the host's network namespace",
          "course_lib/autograde/sandbox.py", 'NAMESPACE_FLAGS = ["--unshare-net", ', "NAMESPACE_FLAGS = [",
          ["tests/test_adversarial.py::test_harm_reaches_nothing_outside_the_sandbox"]),
    Break("shards", "shards grade every student exactly once; PostgreSQL gives SQLite's gradebook",
          "shards numbered from 0: the students of one shard are graded by none",
          "course_lib/autograde/batch.py", '.hexdigest(), 16) % n + 1\n', '.hexdigest(), 16) % n\n',
          ["tests/test_grade_class.py::test_postgres_jobs2_and_two_shards_give_the_sqlite_gradebook"]),
    Break("shard-split", "shards split a class exactly once, the same on every machine",
          "the shard of a student depends on the process's hash seed",
          "course_lib/autograde/batch.py", "def shard_of(student: str, n: int) -> int:\n",
          "def shard_of(student: str, n: int) -> int:\n    return hash(student) % n + 1\n",
          ["tests/test_grade_class.py::test_shards_split_every_student_exactly_once"]),
    Break("mistake-once", "a catalogued mistake is written once: its submission is generated from the catalogue",
          "a mistake submission writes out again the code its catalogue entry generates",
          "tests/submissions/00_welcome.py", 'NaN for large ones",\n        code=FROM_CATALOGUE,\n',
          'NaN for large ones",\n'
          '        code="\\ndef softmax(x, dim=-1):\\n    return x.exp() / x.exp().sum(dim, True)\\n",\n',
          ["tests/test_catalogue.py::test_written_out_mistakes_are_the_ones_no_catalogue_function_can_stand_for"]),
    Break("demo-refusal", "no notebook cell prints the answer rules' refusal (a demo that trips them)",
          "the welcome notebook's failed-check demo defines its wrong function in a cell that imports the grader",
          "solutions/00_welcome/welcome.ipynb", "", "\nfrom course_lib.grading import CheckFailed\n",
          ["solutions/00_welcome/welcome.ipynb"], notebook_cell="hint-demo"),
    Break("debug-stub", "a debug exercise's release ships its buggy code, not the empty stub",
          "the release preprocessor stops recognising '### SHIPPED INSTEAD' and writes nbgrader's stub",
          "course_lib/autograde/release.py", '        if cell.cell_type != "code" or shipped is None:\n',
          "        if True:\n",
          ["tests/test_release.py::test_nbgrader_release_ships_the_bug_and_stubs_the_rest"]),
    Break("exercise-text", "no line of a solution is visible outside a collapsed hint",
          "the softmax exercise's text hands over the solution's first line again",
          "notebooks/00_welcome/welcome.ipynb", "",
          "\n\nStart with `shifted = x - x.amax(dim=dim, keepdim=True)`.\n",
          ["tests/test_exercises.py::test_no_solution_line_is_visible_outside_a_hint[00_welcome/welcome.ipynb]"],
          notebook_cell="softmax-intro"),
    Break("widgets-7.7", "every explorer works on ipywidgets 7.7 (Colab) when its sliders move",
          "the diffusion explorer raises when its slider reaches the last step",
          "course_lib/viz.py",
          "            ab = float(schedule.alpha_bars[t])\n",
          "            ab = float(schedule.alpha_bars[t + 1])\n",
          ["tests/test_widgets_compat.py::test_explorers_work_on_ipywidgets_7_7"
           "[solutions/02_forward_diffusion/forward_diffusion.ipynb]"]),
    Break("browser", "a solutions notebook runs clean in JupyterLab (headless Chromium)",
          "an experiment cell of the welcome notebook raises",
          "solutions/00_welcome/welcome.ipynb", "", "\nraise RuntimeError('planted')\n",
          ["tests/browser/test_browser.py::test_solutions_notebook_runs_clean_in_the_browser"],
          notebook_cell="softmax-temperature", browser=True),
]


def plant(clone: Path, brk: Break) -> None:
    path = clone / brk.path
    if brk.notebook_cell:
        nb = nbformat.read(path, as_version=4)
        cells = [c for c in nb.cells if c.get("id") == brk.notebook_cell]
        if len(cells) != 1:
            raise SystemExit(f"{brk.key}: no cell {brk.notebook_cell!r} in {brk.path}")
        if brk.key == "leak":
            solution = nbformat.read(clone / "solutions" / brk.path.split("/", 1)[1], as_version=4)
            cells[0].source = next(c for c in solution.cells if c.get("id") == brk.notebook_cell).source
        else:
            cells[0].source += brk.new
        nbformat.write(nb, path)
        return
    text = path.read_text(encoding="utf-8")
    if text.count(brk.old) != 1:
        raise SystemExit(f"{brk.key}: the text to replace occurs {text.count(brk.old)} times in {brk.path}")
    path.write_text(text.replace(brk.old, brk.new), encoding="utf-8")


def run(brk: Break, python: str) -> tuple[bool, float, str]:
    """Plant ``brk`` in a fresh clone and run its tests: (caught, seconds, last lines of pytest)."""
    with tempfile.TemporaryDirectory(prefix=f"planted-{brk.key}-") as tmp:
        clone = Path(tmp) / "course"
        subprocess.run(["git", "clone", "--quiet", "--shared", str(ROOT), str(clone)], check=True)
        plant(clone, brk)
        env = dict(os.environ, PYTHONPATH=str(clone), COURSE_FAST="1", MPLBACKEND="Agg")
        env["PATH"] = str(Path(python).parent) + os.pathsep + env.get("PATH", "")
        cmd = [python, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env",
               *(["-m", "browser"] if brk.browser else []), *brk.tests]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=clone, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        # 1: tests failed (caught). 0: all passed (not caught). Anything else (collection error...) is not a catch.
        return proc.returncode == 1, seconds, tail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated keys (see --list)")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    chosen = [b for b in BREAKS if not args.only or b.key in args.only.split(",")]
    if args.list:
        for b in BREAKS:
            print(f"{b.key:14} {b.guarantee}")
        return 0
    if shutil.which("git") is None:
        raise SystemExit("git is needed (the breaks are planted in a clone)")
    rows, missed = [], []
    for brk in chosen:
        caught, seconds, tail = run(brk, args.python)
        rows.append(f"| {brk.guarantee} | {brk.planted} | `{brk.tests[0].split('::')[-1]}` | "
                    f"{'caught' if caught else '**NOT caught**'} | {seconds:.0f} s |")
        print(rows[-1], flush=True)
        if not caught:
            missed.append(brk.key)
            print(tail, file=sys.stderr)
    print("\n| guarantee | planted break | guarding test | result | time |\n|---|---|---|---|---|")
    print("\n".join(rows))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
