#!/usr/bin/env bash
# Build the executed HTML book into _build/html (sets up .venv and MathJax first).
# Every notebook is executed (results cached in _build/.jupyter_cache, so unchanged notebooks are
# not re-run); any warning, including a failing cell, fails the build.
# Extra arguments go to `jupyter-book build`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
# One math thread per notebook kernel: the book's networks are tiny, and PyTorch's thread pool makes them
# several times slower (past the 120 s cell limit) when the cores are shared with other notebooks or jobs.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"

start=$(date +%s)
status=0
# Execute outdated notebooks side by side into the execution cache (one per CPU core); the book
# build below then takes every result from the cache. A failing notebook stops here.
python scripts/execute_notebooks.py || status=$?
if [ "$status" -eq 0 ]; then
    # --all: re-read every page, so that warnings from unchanged pages are reported (and fail the
    # build) on every run, not only on the first; cached notebooks are not re-executed.
    # _build/html is written from scratch, so no page of a removed chapter lingers there.
    rm -rf _build/html
    jupyter-book build . --all -W --keep-going --builder html "$@" || status=$?
fi
elapsed=$(( $(date +%s) - start ))

if [ "$status" -ne 0 ]; then
    echo "build.sh: the book build FAILED after ${elapsed} s (exit $status); see the warnings above." >&2
    exit "$status"
fi
echo "build.sh: book built in ${elapsed} s. Open _build/html/index.html"
