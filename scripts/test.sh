#!/usr/bin/env bash
# Run every test: set up, install Debian Chromium if missing, build the book (executing every
# notebook once), then ONE pytest run with the unit tests in tests/, every notebook in book/
# under nbmake (executing each a second time) and the browser test of the built pages.
# Exits with pytest's status (or the build's, if only the build failed).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

# Debian's Chromium for the browser test (Playwright drives it; no Playwright browser download).
if [ ! -x /usr/bin/chromium ]; then
    apt_install="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium"
    if [ "$(id -u)" -eq 0 ]; then
        echo "test.sh: installing Debian chromium"
        bash -c "$apt_install"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        echo "test.sh: installing Debian chromium with sudo"
        sudo bash -c "$apt_install"
    else
        echo "test.sh: /usr/bin/chromium is missing and this user cannot install it. As root run:" >&2
        echo "    $apt_install" >&2
        echo "test.sh: continuing; the browser test will fail until Chromium is installed." >&2
    fi
fi

build_status=0
bash scripts/build.sh || build_status=$?

notebooks=()
while IFS= read -r -d '' nb; do notebooks+=("$nb"); done \
    < <(find book -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' -print0 | sort -z)

# With pytest-xdist, tests and notebooks run side by side, one worker per CPU core (the browser
# test stays in one worker: one Chromium). Each worker then gets one math thread.
parallel=()
cpus=$(python -c 'import os; print(os.cpu_count() or 1)')
if [ "$cpus" -gt 1 ] && python -c 'import xdist' >/dev/null 2>&1; then
    parallel=(-n "$cpus" --dist loadgroup)
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
fi

start=$(date +%s)
test_status=0
python -m pytest tests "${notebooks[@]}" --nbmake --nbmake-timeout=120 "${parallel[@]}" "$@" \
    || test_status=$?
echo "test.sh: pytest finished in $(( $(date +%s) - start )) s with exit code $test_status"

if [ "$test_status" -ne 0 ]; then exit "$test_status"; fi
if [ "$build_status" -ne 0 ]; then
    echo "test.sh: the tests passed but the book build failed (exit $build_status)" >&2
    exit "$build_status"
fi
echo "test.sh: all tests passed"
