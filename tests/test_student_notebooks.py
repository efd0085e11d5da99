"""scripts/make_student_notebooks.py: solution cells removed, outputs cleared, the student version still runs.

The end-to-end test makes the student version of one chapter with ``solution`` cells and executes it top to bottom
with nbclient (kernel working directory book/, as in the book build). It costs about a minute of CI, so it uses
the cheaper of the chapters that have solution cells.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
SCRIPT = ROOT / "scripts" / "make_student_notebooks.py"
CHAPTER = BOOK / "11_guidance.ipynb"  # the cheaper chapter with solution cells (12_meanflow has them too)
STUB_MARK = "# your code here"

_spec = importlib.util.spec_from_file_location("make_student_notebooks", SCRIPT)
msn = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(msn)


def _tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def _tiny_notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    stub = nbformat.v4.new_code_cell("def f(x):\n    # your code here\n    return x\n")
    stub.outputs = [nbformat.v4.new_output("stream", text="old output\n")]
    stub.execution_count = 3
    solution = nbformat.v4.new_code_cell("def f_solution(x):\n    return 2 * x\n",
                                         metadata={"tags": ["solution", "hide-input"]})
    solution_md = nbformat.v4.new_markdown_cell("The answer is 2x.", metadata={"tags": ["solution"]})
    other = nbformat.v4.new_code_cell("print(f(1))", metadata={"tags": ["hide-input"]})
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), stub, solution, solution_md, other]
    return nb


def test_student_version_removes_solution_cells_and_clears_outputs():
    nb = _tiny_notebook()
    student = msn.student_version(nb)
    assert [c.id for c in student.cells] == [nb.cells[i].id for i in (0, 1, 4)]
    assert all("solution" not in _tags(c) for c in student.cells)
    code = [c for c in student.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert student.cells[1].source == nb.cells[1].source and _tags(student.cells[2]) == ["hide-input"]
    assert nb.cells[1].outputs and len(nb.cells) == 5  # the source notebook is not modified
    nbformat.validate(student)


def test_cli_writes_into_dir_and_refuses_to_overwrite_sources(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    nbformat.write(_tiny_notebook(), src / "tiny.ipynb")
    out = subprocess.run([sys.executable, str(SCRIPT), str(src / "tiny.ipynb"), "-o", str(tmp_path / "student")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "2 solution cells removed" in out.stdout
    written = nbformat.read(tmp_path / "student" / "tiny.ipynb", as_version=4)
    assert len(written.cells) == 3
    with pytest.raises(ValueError, match="overwrite"):
        msn.make_student_notebook(src / "tiny.ipynb", src)
    bad = subprocess.run([sys.executable, str(SCRIPT), str(src / "missing.ipynb"), "-o", str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "SRC must be an existing .ipynb file" in bad.stderr


def test_assignment_example_student_version(tmp_path, monkeypatch):
    """No solution is left; run as handed out, only the autograded test cells fail, with the checkers' messages."""
    from nbclient import NotebookClient

    example = BOOK / "assignment_example.ipynb"
    dest, removed = msn.make_student_notebook(example, tmp_path)
    student = nbformat.read(dest, as_version=4)
    assert removed >= 3
    text = "\n".join(c.source for c in student.cells)
    assert "### BEGIN SOLUTION" not in text and "### END SOLUTION" not in text
    stubs = [c for c in student.cells if c.cell_type == "code" and STUB_MARK in c.source]
    assert len(stubs) == removed  # one stub per removed solution

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    NotebookClient(student, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(BOOK)}}).execute()
    failed = {c.metadata["nbgrader"]["grade_id"]: o for c in student.cells if c.cell_type == "code"
              for o in c.outputs if o.output_type == "error"}
    graded = {c.metadata["nbgrader"]["grade_id"] for c in student.cells
              if c.metadata.get("nbgrader", {}).get("grade")}
    assert set(failed) == graded and len(graded) == removed
    assert all(o.ename == "AssertionError" and o.evalue for o in failed.values())


def test_student_chapter_runs_top_to_bottom(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    original = nbformat.read(CHAPTER, as_version=4)
    n_solutions = sum("solution" in _tags(c) for c in original.cells)
    stubs = [c.id for c in original.cells if c.cell_type == "code" and STUB_MARK in c.source]
    assert n_solutions >= 2 and len(stubs) >= 2, "the chapter should have solution cells and stubs"

    dest, removed = msn.make_student_notebook(CHAPTER, tmp_path)
    student = nbformat.read(dest, as_version=4)
    nbformat.validate(student)
    assert removed == n_solutions
    assert not any("solution" in _tags(c) for c in student.cells), "a solution cell is left"
    assert [c.id for c in student.cells if c.cell_type == "code" and STUB_MARK in c.source] == stubs
    assert len(student.cells) == len(original.cells) - n_solutions

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    client = NotebookClient(student, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(BOOK)}})
    client.execute()  # raises CellExecutionError if any cell fails
    feedback = [o for c in student.cells if c.cell_type == "code" and STUB_MARK in c.source for o in c.outputs]
    assert feedback, "the stubs' checker calls printed no feedback"
