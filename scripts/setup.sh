#!/usr/bin/env bash
# Idempotent set-up of everything the book needs, all inside the repository:
#   .venv/                 virtual environment (requirements.txt + editable fmlib)
#   _vendor/html/mathjax/  MathJax 3 (npm package "mathjax", its es5/ build), published by
#                          Sphinx's html_extra_path as _build/html/mathjax/ so that math renders
#                          without network access.
# Nothing is installed globally. Safe to run again: finished steps are skipped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=.venv
MATHJAX_VERSION=3.2.2          # latest mathjax@3
MATHJAX_DIR=_vendor/html/mathjax

# 1. Python virtual environment -------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    PY=""
    for cand in python3.11 python3; do
        if command -v "$cand" >/dev/null 2>&1; then PY=$(command -v "$cand"); break; fi
    done
    if [ -z "$PY" ]; then
        echo "setup.sh: no python3.11 or python3 on PATH; install Python 3.11 first." >&2
        exit 1
    fi
    if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
        echo "setup.sh: $PY is $("$PY" --version 2>&1); Python >= 3.10 (3.11 recommended) is needed." >&2
        exit 1
    fi
    echo "setup.sh: creating $VENV with $PY ($("$PY" --version 2>&1))"
    "$PY" -m venv "$VENV"
fi

# 2. Python packages (skipped when requirements.txt and pyproject.toml did not change) ------
stamp="$VENV/.fmbook-installed"
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] \
        || ! "$VENV/bin/python" -c 'import fmlib, jupyter_book' >/dev/null 2>&1; then
    echo "setup.sh: installing requirements.txt and fmlib (editable) into $VENV"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r requirements.txt
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-deps -e .
    echo "$want" > "$stamp"
fi

# 3. MathJax 3, served locally ----------------------------------------------------------------
if [ ! -f "$MATHJAX_DIR/tex-mml-chtml.js" ]; then
    echo "setup.sh: fetching mathjax@$MATHJAX_VERSION into _vendor/"
    mkdir -p _vendor/npm _vendor/html
    if command -v npm >/dev/null 2>&1; then
        npm install --prefix _vendor/npm --no-save --no-audit --no-fund --loglevel=error \
            "mathjax@$MATHJAX_VERSION"
        src=_vendor/npm/node_modules/mathjax/es5
    else
        # No npm: download the same package tarball from the npm registry with Python.
        echo "setup.sh: npm not found, downloading the tarball from registry.npmjs.org"
        "$VENV/bin/python" - "$MATHJAX_VERSION" <<'PY'
import io, sys, tarfile, urllib.request
v = sys.argv[1]
url = f"https://registry.npmjs.org/mathjax/-/mathjax-{v}.tgz"
data = urllib.request.urlopen(url, timeout=120).read()
with tarfile.open(fileobj=io.BytesIO(data)) as tar:
    tar.extractall("_vendor/npm/tarball")
PY
        src=_vendor/npm/tarball/package/es5
    fi
    rm -rf "$MATHJAX_DIR.tmp"
    cp -r "$src" "$MATHJAX_DIR.tmp"
    rm -rf "$MATHJAX_DIR"
    mv "$MATHJAX_DIR.tmp" "$MATHJAX_DIR"
fi
echo "setup.sh: environment ready ($VENV, $MATHJAX_DIR)"
