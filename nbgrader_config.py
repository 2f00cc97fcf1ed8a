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

# The student's code stub.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
