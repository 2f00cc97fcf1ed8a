"""Grading a class you can trust: sandboxed kernels, tamper flags, parallel and sharded batches.

Instructor-side machinery, used through nbgrader's configuration
(``nbgrader_config.py``) and the ``python -m course_lib.autograde`` command
(``make grade``). Student notebooks never import it.
"""
