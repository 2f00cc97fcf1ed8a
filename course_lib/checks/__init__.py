"""Per-notebook catalogues for the self-check cells: shortcuts to forbid and known mistakes.

One module per notebook, named for its folder (``welcome`` for 00_welcome, ``gans``,
``forward_diffusion``, ``reverse_diffusion``, ``attention``, ``pretraining``,
``fine_tuning``, ...). Each holds, for its notebook's exercises, the ready-made
functions an answer must not call and the catalogues of known mistakes, where
every likely cause a check prints is written once:

- ``*_MISTAKES``: description -> a mistaken implementation, which
  ``grading.check_function`` runs on the student's input to name the one that
  reproduces a wrong answer. It is the only copy of the mistake: the grading
  tests build the mistake's submission from it (``tools/catalogue.py``), so it is
  written as a student would write it, or as a closure or partial over such a
  function.
- ``*_SYMPTOMS``: for a mistake a check detects by a property (B not zero at
  the start, a base layer left trainable), description -> the predicate the
  check applies (``grading.matching_cause``).
- ``*_ERRORS``: a pattern searched in "ExceptionType: message" -> the
  description of what makes an answer raise it (``grading.error_cause``).

Nothing here is secret: hidden tests keep only their inputs hidden, in the notebook.
"""
