"""``python -m course_lib.autograde``: grade a class, list the flagged submissions.

    python -m course_lib.autograde grade 01_gans --jobs 4           # everyone who submitted 01_gans
    python -m course_lib.autograde grade 01_gans --shard 3/8        # one of 8 machines' share
    python -m course_lib.autograde grade 01_gans --student alice --force
    python -m course_lib.autograde flags 01_gans                    # what needs a look, and why
    python -m course_lib.autograde sandbox                          # is there a sandbox here?

Run it from the course root (where nbgrader_config.py is), or pass --root.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard takes k/n, e.g. 2/8; got {text!r}") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"--shard k/n needs 1 <= k <= n; got {text!r}")
    return k, n


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_worker"]:
        from .batch import worker_main

        worker_main(argv[1], argv[2])
        return 0
    parser = argparse.ArgumentParser(prog="python -m course_lib.autograde", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    grade = sub.add_parser("grade", help="grade every submitted student of an assignment")
    grade.add_argument("assignment")
    grade.add_argument("--root", type=Path, default=Path.cwd(), help="course root (default: here)")
    grade.add_argument("--jobs", "-j", type=int, default=1, help="parallel sandboxed workers (default 1)")
    grade.add_argument("--shard", type=_shard, default=(1, 1), metavar="K/N", help="grade shard K of N")
    grade.add_argument("--student", action="append", help="only this student (repeatable)")
    grade.add_argument("--force", action="store_true", help="regrade students who are already graded")
    grade.add_argument("--db", help="gradebook URL, e.g. postgresql+psycopg2://grader@host/gradebook")
    grade.add_argument("--cell-timeout", type=int, help="seconds per cell (default: nbgrader_config.py)")
    grade.add_argument("--notebook-timeout", type=float, default=900.0,
                       help="seconds per submission before it is stopped and flagged (default 900)")
    grade.add_argument("--unsafe-no-sandbox", action="store_true",
                       help="grade even where no sandbox is available (student code runs with your rights)")

    show = sub.add_parser("flags", help="list flagged submissions and why")
    show.add_argument("assignment", nargs="?")
    show.add_argument("--root", type=Path, default=Path.cwd())
    show.add_argument("--db")

    sub.add_parser("sandbox", help="say whether grading can sandbox student code here")

    args = parser.parse_args(argv)
    if args.command == "sandbox":
        from .sandbox import main as sandbox_main

        return sandbox_main()
    if args.command == "flags":
        from .batch import load_config
        from .flags import flags

        db = args.db or load_config(args.root.resolve()).CourseDirectory.db_url
        found = flags(db, args.assignment)
        for (assignment, student), reasons in sorted(found.items()):
            print(f"{assignment}  {student}")
            for reason in reasons:
                print(f"    {reason}")
        print(f"{len(found)} flagged submission{'s' if len(found) != 1 else ''}")
        return 0

    from .batch import grade_class

    try:
        results = grade_class(
            args.root, args.assignment, jobs=args.jobs, shard=args.shard, students=args.student,
            force=args.force, db_url=args.db, allow_unsandboxed=args.unsafe_no_sandbox,
            cell_timeout=args.cell_timeout, notebook_timeout=args.notebook_timeout,
        )
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    graded = [r for r in results if r.status == "graded"]
    failed = [r for r in results if r.status == "failed"]
    flagged = [r for r in results if r.flags]
    print(f"done: {len(graded)} graded, {len(failed)} could not run (scored 0, flagged), "
          f"{sum(r.status == 'skipped' for r in results)} already graded; {len(flagged)} flagged for review"
          + (" -- see `python -m course_lib.autograde flags`" if flagged else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
