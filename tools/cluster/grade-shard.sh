#!/usr/bin/env bash
# Grade one shard of a class: run as a Slurm array task (grade.sbatch) or as a pod of a
# Kubernetes indexed Job (grade-job.yaml). Every shard shares the course folder (shared
# storage: solutions/, grading/submitted/, grading/autograded/) and one PostgreSQL gradebook.
#
#   ASSIGNMENT     the assignment to grade, e.g. 01_gans                      (required)
#   GRADEBOOK_URL  postgresql+psycopg2://user@host/gradebook                  (required)
#   shard k of n   SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT (Slurm), or
#                  JOB_COMPLETION_INDEX (0-based) / SHARDS (Kubernetes)
#   JOBS           sandboxed workers per shard (default 1; one per 2 cores is a good start)
#   COURSE_ROOT    the course folder (default: this repository)
#   PYTHON         the course environment's python (default: COURSE_ROOT/.venv/bin/python)
#   GRADE_ARGS     more options, e.g. "--force" or "--notebook-timeout 600"
set -euo pipefail
: "${ASSIGNMENT:?set ASSIGNMENT, e.g. ASSIGNMENT=01_gans}"
: "${GRADEBOOK_URL:?set GRADEBOOK_URL to the shared PostgreSQL gradebook}"
k=${SLURM_ARRAY_TASK_ID:-$(( ${JOB_COMPLETION_INDEX:-0} + 1 ))}
n=${SLURM_ARRAY_TASK_COUNT:-${SHARDS:-1}}
cd "${COURSE_ROOT:-$(dirname "$0")/../..}"
python=${PYTHON:-.venv/bin/python}
export PATH="$(dirname "$python"):$PATH"  # nbgrader shells out to alembic
# shellcheck disable=SC2086  # GRADE_ARGS is a list of options
exec "$python" -m course_lib.autograde grade "$ASSIGNMENT" --shard "$k/$n" --db "$GRADEBOOK_URL" \
    --jobs "${JOBS:-1}" ${GRADE_ARGS:-}
