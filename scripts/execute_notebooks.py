"""Execute the book's notebooks in parallel into jupyter-book's execution cache.

Called by scripts/build.sh before `jupyter-book build`. jupyter-book (myst-nb, `execute_notebooks:
cache`) executes outdated notebooks one after the other; this script runs the outdated `.ipynb`
chapters listed in _toc.yml side by side (one process per CPU core) with the same settings and the
same cache (_build/.jupyter_cache), so the build then finds every result cached. Each notebook is
still executed only once. Unchanged notebooks are not re-run.

Exit status 1, with the tracebacks, when a notebook fails (the build would fail on it anyway).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "_build" / ".jupyter_cache"


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8")) or {}


def toc_notebooks() -> list[Path]:
    """The .ipynb files that _toc.yml puts in the book, in order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8")) or {}
    names: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            for key in ("root", "file"):
                if isinstance(node.get(key), str):
                    names.append(node[key])
            for value in node.values():
                if isinstance(value, (list, dict)):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    found = []
    for name in names:
        path = ROOT / name
        path = path if path.suffix == ".ipynb" else path.with_suffix(".ipynb")
        if path.is_file() and path not in found:
            found.append(path)
    return found


def main() -> int:
    execute = _config().get("execute", {}) or {}
    if execute.get("execute_notebooks", "auto") not in ("cache", "auto"):
        return 0
    timeout = int(execute.get("timeout", 30))
    allow_errors = bool(execute.get("allow_errors", False))

    from jupyter_cache import get_cache
    from jupyter_cache.executors import load_executor

    notebooks = toc_notebooks()
    if not notebooks:
        return 0
    cache = get_cache(str(CACHE))
    records = [cache.add_nb_to_project(str(nb)) for nb in notebooks]
    outdated = [r for r in records if cache.get_cached_project_nb(r.uri) is None]
    if not outdated:
        print(f"execute_notebooks: all {len(notebooks)} notebook(s) cached")
        return 0

    cpus = os.cpu_count() or 1
    if len(outdated) > 1 and cpus > 1:
        # Several kernels share the cores: one (or a few) math threads each, not all of them.
        threads = str(max(1, cpus // min(cpus, len(outdated))))
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(var, threads)
        kind = "local-parallel"
    else:
        kind = "local-serial"
    print(
        f"execute_notebooks: executing {len(outdated)} of {len(notebooks)} notebook(s) "
        f"({kind}, {min(cpus, len(outdated))} at a time, {timeout} s per cell)",
        flush=True,
    )
    logger = logging.getLogger("execute_notebooks")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    executor = load_executor(kind, cache=cache, logger=logger)
    result = executor.run_and_cache(
        filter_pks=[r.pk for r in outdated], timeout=timeout, allow_errors=allow_errors
    )
    failed = list(result.excepted) + list(result.errored)
    for uri in result.succeeded:
        print(f"  ok      {Path(uri).relative_to(ROOT)}")
    if not failed:
        return 0
    for uri in failed:
        print(f"  FAILED  {Path(uri).relative_to(ROOT)}", file=sys.stderr)
        try:
            tb = cache.get_project_record(uri).traceback
        except KeyError:
            tb = None
        if tb:
            print(tb, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
