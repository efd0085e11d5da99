"""Notebooks are committed without outputs: the book executes them when it is built.

Fails when a notebook under book/ carries outputs or execution counts, naming the notebook and
the cell. Clear them with JupyterLab's "Edit > Clear Outputs of All Cells", or with
``.venv/bin/python tests/test_notebooks_clean.py book/*.ipynb`` (this file, run as a script).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"


def _notebooks() -> list[Path]:
    """Tracked notebooks under book/ in a git checkout (plus untracked, not ignored ones), else a glob."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", "book"],
            cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
        ).stdout
        files = sorted({ROOT / f for f in out.split("\0") if f.endswith(".ipynb")})
        files = [f for f in files if f.is_file()]
    except (OSError, subprocess.SubprocessError):
        files = None
    if files is None or (not files and not (ROOT / ".git").exists()):
        files = sorted(BOOK.rglob("*.ipynb"))
    return [f for f in files if ".ipynb_checkpoints" not in f.parts]


NOTEBOOKS = _notebooks()


def test_book_has_notebooks():
    assert NOTEBOOKS, f"no notebooks found under {BOOK}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_notebook_has_no_outputs(path: Path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    problems = []
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        where = f"cell {i}"
        if cell.get("id"):
            where += f" (id {cell['id']})"
        first = "".join(cell.get("source", "")).strip().splitlines()[:1]
        if first:
            where += f" starting {first[0][:60]!r}"
        if cell.get("outputs"):
            problems.append(f"{where}: {len(cell['outputs'])} output(s)")
        if cell.get("execution_count") is not None:
            problems.append(f"{where}: execution_count = {cell['execution_count']}")
    rel = path.relative_to(ROOT).as_posix()
    assert not problems, (
        f"{rel} must be committed without outputs; clear them with "
        f"`.venv/bin/python tests/test_notebooks_clean.py {rel}`:\n  " + "\n  ".join(problems)
    )


def clear_outputs(path: Path) -> bool:
    """Remove outputs and execution counts from a notebook in place; True if it changed."""
    import nbformat

    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    changed = False
    for cell in nb.cells:
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
            cell.outputs = []
            cell.execution_count = None
            changed = True
    if changed:
        nbformat.write(nb, path)
    return changed


if __name__ == "__main__":
    import sys

    targets = [Path(p) for p in sys.argv[1:]] or NOTEBOOKS
    for target in targets:
        print(("cleared   " if clear_outputs(target) else "unchanged ") + str(target))
