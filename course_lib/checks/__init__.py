"""Per-notebook catalogues for the self-check cells: shortcuts to forbid and known mistakes.

Each module holds, for one notebook's exercises, the ready-made functions an
answer must not call and a ``description -> mistaken implementation`` table.
``grading.check_function`` runs the mistaken implementations on the same input
as the student's and names the one that reproduces a wrong answer. Nothing here
is secret: hidden tests keep only their inputs hidden, in the notebook.
"""
