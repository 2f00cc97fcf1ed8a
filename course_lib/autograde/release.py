"""The student release of a *debug* exercise: it ships code with a bug, not nbgrader's stub.

A debug exercise hands the student a function that runs but is wrong; the
self-check's message is the starting point, the fix is the answer. In the
solutions notebook the answer cell holds the right code in its solution region,
then the marker :data:`SHIPPED`, then the code students receive, commented out
(so the solutions notebook still runs the right code)::

    def q_step(x_prev, t, schedule, noise=None):
        \"\"\"...\"\"\"
        <nbgrader's begin-solution marker line>
        beta = extract(schedule.betas, t, x_prev)
        return (1 - beta).sqrt() * x_prev + beta.sqrt() * noise
        ### SHIPPED INSTEAD
        # beta = extract(schedule.betas, t, x_prev)
        # return (1 - beta) * x_prev + beta * noise
        <nbgrader's end-solution marker line>

``nbgrader generate_assignment`` (``make release``) runs
:class:`ClearSolutionsShippingCode` in place of nbgrader's ``ClearSolutions``
(``nbgrader_config.py``): a solution region with the marker becomes the
uncommented shipped lines; every other region becomes the usual
``# YOUR CODE HERE`` stub. The blank release is then a submission whose debug
exercises fail their checks, as every blank answer does.
"""

from __future__ import annotations

import re

from nbgrader.preprocessors import ClearSolutions

SHIPPED = "### SHIPPED INSTEAD"
_COMMENTED = re.compile(r"^(\s*)# ?(.*)$")


def uncomment(line: str) -> str:
    """``'    #     return x'`` -> ``'        return x'``: the first ``#`` (and one space after it) removed."""
    if not line.strip():
        return ""
    found = _COMMENTED.match(line)
    if not found:
        raise ValueError(f"a line after {SHIPPED!r} must be commented out with '# ', got {line!r}")
    return found.group(1) + found.group(2) if found.group(2) else ""


def split(source: str, begin: str = "BEGIN SOLUTION", end: str = "END SOLUTION") -> tuple[str, str | None]:
    """An answer cell as (the solutions notebook's code, the release's code): one walk over its lines.

    The first is the cell without its :data:`SHIPPED` part (marker and commented lines): the solution, markers
    kept. The second is ``None`` when the cell ships no code; otherwise the lines outside the solution region,
    with the region (markers, right code, marker) replaced by the shipped lines, uncommented. A marker outside
    a solution region, or two in one region, is an error.
    """
    if SHIPPED not in source:
        return source, None
    right, shipped, inside, shipping, marked = [], [], False, False, False
    for line in source.split("\n"):
        if line.strip() == SHIPPED:
            if not inside or shipping:
                raise ValueError(f"{SHIPPED!r} must appear once, inside a solution region")
            shipping = marked = True
            continue
        if begin in line:
            inside, shipping = True, False
        elif end in line:
            inside = shipping = False
        elif shipping:
            shipped.append(uncomment(line))
            continue
        elif not inside:
            shipped.append(line)
        right.append(line)
    if not marked:
        raise ValueError(f"{SHIPPED!r} must be a line of its own, inside a solution region")
    return "\n".join(right), "\n".join(shipped)


def ship(source: str, begin: str = "BEGIN SOLUTION", end: str = "END SOLUTION") -> str | None:
    """The release's text of an answer cell whose solution region has a :data:`SHIPPED` part, else ``None``."""
    return split(source, begin, end)[1]


def right_code(source: str) -> str:
    """An answer cell with its :data:`SHIPPED` part (marker and commented lines) removed: the solution alone."""
    return split(source)[0]


class ClearSolutionsShippingCode(ClearSolutions):
    """nbgrader's ``ClearSolutions``, except that a region with :data:`SHIPPED` becomes its shipped code."""

    def _replace_solution_region(self, cell, language: str) -> bool:
        shipped = ship(cell.source, self.begin_solution_delimeter, self.end_solution_delimeter)
        if cell.cell_type != "code" or shipped is None:
            return super()._replace_solution_region(cell, language)
        cell.source = shipped
        return True
