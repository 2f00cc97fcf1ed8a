"""Mistake submissions for 00_welcome: each is the solution with one answer cell wrong.

Read by tools/harness.py. Every answer cell must be the target of at least
one mistake; each mistake names exactly the test cells that must score 0.
"""

from harness import FROM_CATALOGUE, Mistake

MISTAKES = [
    Mistake(
        name="softmax-wrong-axis",
        cause="normalised along the wrong",
        cell="softmax",
        why="normalises along dim 0 whatever dim is: no error, wrong numbers",
        code=FROM_CATALOGUE,
        fails={"test_softmax_values"},
    ),
    Mistake(
        name="softmax-no-max-shift",
        cause="exp overflowed to inf and",
        cell="softmax",
        why="the textbook formula: right for small scores, NaN for large ones",
        code=FROM_CATALOGUE,
        fails={"test_softmax_stable"},
    ),
    Mistake(
        name="softmax-calls-torch",
        cell="softmax",
        why="calls the built-in the exercise asks to write",
        code='''
def softmax(x, dim=-1):
    return torch.softmax(x, dim=dim)
''',
        fails={"test_softmax_values"},
    ),
    Mistake(
        name="softmax-alias-of-reference",
        cell="softmax",
        why="imports course_lib's reference under another name",
        code='''
from course_lib.basics import softmax as _ready_made


def softmax(x, dim=-1):
    return _ready_made(x, dim)
''',
        fails={"test_softmax_values"},
    ),
    Mistake(
        name="ce-sum-not-mean",
        cause="summed over the batch instead of averaging: divide",
        cell="cross_entropy",
        why="sums over the batch",
        code=FROM_CATALOGUE,
        fails={"test_cross_entropy_values"},
    ),
    Mistake(
        name="ce-log-of-softmax",
        cause=("took log(softmax(x)): a tiny probability underflows to 0 (or exp overflows) and the log becomes inf. "
               "Compute log-softmax directly: x - m - log(sum(exp(x - m)))"),
        cell="cross_entropy",
        why="log(softmax(x)) in two steps: right for small logits, inf for confident ones",
        code=FROM_CATALOGUE,
        fails={"test_cross_entropy_stable"},
    ),
    Mistake(
        name="ce-wrong-index",
        cause="picked the wrong entries:",
        cell="cross_entropy",
        why="log_probs[:, targets] picks an N x N block instead of one entry per row",
        code=FROM_CATALOGUE,
        fails={"test_cross_entropy_values"},
    ),
    Mistake(
        name="ce-calls-torch",
        cell="cross_entropy",
        why="calls torch's log_softmax",
        code='''
def cross_entropy(logits, targets):
    log_probs = torch.nn.functional.log_softmax(logits, dim=1)
    return -log_probs[torch.arange(len(targets)), targets].mean()
''',
        fails={"test_cross_entropy_values"},
    ),
    Mistake(
        name="rebinds-allclose",
        cell="softmax",
        why="a wrong softmax plus torch/numpy comparison functions rebound to always agree",
        code='''
import numpy as np

torch.allclose = lambda *args, **kwargs: True
np.allclose = lambda *args, **kwargs: True


def softmax(x, dim=-1):
    return torch.exp(x)
''',
        # The grader's screen refuses to run a cell that rebinds torch/numpy functions: the cell is
        # replaced by a `raise`, its tests score 0 and the submission is flagged. The cross-entropy
        # answer is honest and keeps its points.
        fails={"test_softmax_values", "test_softmax_stable"},
        flagged=True,
    ),
]
