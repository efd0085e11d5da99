#!/usr/bin/env bash
# Work on the book interactively: set up .venv (scripts/setup.sh), install JupyterLab into it if missing,
# and start `jupyter lab book/` with the project's environment (fmlib importable, widgets live).
# Extra arguments go to `jupyter lab` (e.g. --no-browser --port 8890).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
if ! .venv/bin/python -c 'import jupyterlab' >/dev/null 2>&1; then
    echo "lab.sh: installing jupyterlab into .venv"
    .venv/bin/python -m pip install --disable-pip-version-check -q jupyterlab
fi
export PATH="$PWD/.venv/bin:$PATH"
# Same math-thread setting as the build: the book's networks are tiny and run faster on one thread.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
exec jupyter lab book/ "$@"
