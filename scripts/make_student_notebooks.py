#!/usr/bin/env python
"""Write student versions of notebooks: solution cells removed, outputs cleared.

Usage::

    python scripts/make_student_notebooks.py book/11_guidance.ipynb book/12_meanflow.ipynb -o student/

For each SRC notebook, DIR/<same file name> is written with

* every cell tagged ``solution`` removed (the book tags its solution code cells ``solution``; the exercise's
  stub cell, which the student edits, and the checker call stay);
* every code cell's outputs and execution count cleared;

and everything else unchanged (cell sources, metadata, cell ids of the kept cells, notebook metadata). The result
is validated against the notebook schema before it is written. Markdown such as sphinx-exercise's
``solution-start`` / ``solution-end`` directives is kept: in JupyterLab it shows as plain text around the
removed cell.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

SOLUTION_TAG = "solution"


def student_version(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Return a copy of ``nb`` without cells tagged ``solution`` and with code outputs cleared."""
    out = nbformat.from_dict(nb)  # deep copy
    kept = []
    for cell in out.cells:
        if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        kept.append(cell)
    out.cells = kept
    return out


def make_student_notebook(src: Path, out_dir: Path) -> tuple[Path, int]:
    """Write the student version of ``src`` into ``out_dir``; return its path and the number of cells removed."""
    nb = nbformat.read(src, as_version=nbformat.NO_CONVERT)
    student = student_version(nb)
    nbformat.validate(student)
    dest = out_dir / src.name
    if dest.resolve() == src.resolve():
        raise ValueError(f"the output folder must differ from the folder of {src}: it would overwrite the source")
    nbformat.write(student, dest)
    return dest, len(nb.cells) - len(student.cells)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", metavar="SRC", nargs="+", type=Path, help="notebooks (.ipynb) to convert")
    parser.add_argument("-o", "--output", metavar="DIR", type=Path, required=True,
                        help="folder for the student versions (created if missing)")
    args = parser.parse_args(argv)
    for src in args.sources:
        if src.suffix != ".ipynb" or not src.is_file():
            parser.error(f"SRC must be an existing .ipynb file; got {src}")
    args.output.mkdir(parents=True, exist_ok=True)
    for src in args.sources:
        dest, removed = make_student_notebook(src, args.output)
        print(f"{src} -> {dest} ({removed} solution cell{'s' if removed != 1 else ''} removed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
