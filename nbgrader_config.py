"""nbgrader's view of this repository.

Instructor sources live in ``solutions/<assignment>/``; ``nbgrader
generate_assignment`` (``make release``) writes the student versions to
``notebooks/<assignment>/``. Everything grading produces -- the gradebook,
``submitted/``, ``autograded/``, ``feedback/`` -- lives under the git-ignored
``grading/`` folder.
"""

import os

_here = os.path.dirname(os.path.abspath(__file__))
os.makedirs(os.path.join(_here, "grading"), exist_ok=True)  # sqlite needs the folder

c = get_config()  # noqa: F821 - provided by traitlets when nbgrader loads this file

c.CourseDirectory.root = _here
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.CourseDirectory.submitted_directory = os.path.join("grading", "submitted")
c.CourseDirectory.autograded_directory = os.path.join("grading", "autograded")
c.CourseDirectory.feedback_directory = os.path.join("grading", "feedback")
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(_here, "grading", "gradebook.db")
# Only notebooks are course material; checkpoints and caches never ship.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback"]

# Grading runs in FAST mode (course_lib reads NBGRADER_EXECUTION), so every
# cell finishes in seconds; a cell still running after this many seconds is
# interrupted, scores 0, and grading moves on to the next cell.
c.Execute.timeout = 120
c.Execute.interrupt_on_timeout = True
# Once the last cell has run, every output is in: stop the kernel at once instead of asking it to
# shut down and waiting (a second per submission; the sandbox is thrown away either way).
c.Execute.shutdown_kernel = "immediate"

# The student's code stub.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# The course id: PostgreSQL enforces the gradebook's foreign keys, and nbgrader's
# default ("") has no row in its course table.
c.CourseDirectory.course_id = "genai-course"

# --------------------------------------------------------------------------
# Grading you can trust (course_lib.autograde; README, "Instructors")
# --------------------------------------------------------------------------
# Every kernel nbgrader starts runs in a bubblewrap sandbox: its own copy of the
# submission, the environment and the course cache read-only (COURSE_CACHE_DIR
# points at it), no network, memory and process caps.
# Without bubblewrap, autograde refuses to run (c.SandboxedKernelManager.allow_unsandboxed).
c.Execute.kernel_manager_class = "course_lib.autograde.sandbox.SandboxedKernelManager"

# Before a submission runs: experiments are skipped (grading costs the graded
# cells), and cells that break the answer rules are replaced by a `raise`.
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "nbgrader.preprocessors.OverwriteCells",
    "nbgrader.preprocessors.CheckCellMetadata",
    "course_lib.autograde.grading_mode.SkipExperiments",
    "course_lib.autograde.flags.ScreenCells",
]
# After it ran: flags (rules broken, caps hit) go to the gradebook, beside the scores.
c.Autograde.autograde_preprocessors = [
    "nbgrader.preprocessors.Execute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "course_lib.autograde.flags.SaveFlags",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
# `nbgrader export` writes the usual CSV plus a `flags` column.
c.ExportApp.plugin_class = "course_lib.autograde.flags.FlaggedCsvExportPlugin"

# --------------------------------------------------------------------------
# The student release (`make release`)
# --------------------------------------------------------------------------
# A debug exercise ships code with a bug where other exercises ship the stub
# (course_lib.autograde.release): nbgrader's ClearSolutions is swapped for a
# subclass that knows the "### SHIPPED INSTEAD" marker; the rest of the
# pipeline is nbgrader's own.
from nbgrader.converters import GenerateAssignment  # noqa: E402
from nbgrader.preprocessors import ClearSolutions  # noqa: E402

from course_lib.autograde.release import ClearSolutionsShippingCode  # noqa: E402

c.GenerateAssignment.preprocessors = [
    ClearSolutionsShippingCode if step is ClearSolutions else step
    for step in GenerateAssignment.class_traits()["preprocessors"].default()
]
