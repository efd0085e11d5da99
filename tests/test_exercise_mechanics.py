"""Exercise mechanics in every chapter, checked statically (no execution; the notebooks run under nbmake).

The conventions (BOOK_PLAN, reading conventions) are:

- the cell a student edits holds a stub that runs, marked with a "Your answer" / "your code here" comment, and
  only prints the checker's feedback (no ``assert``: a wrong answer must not stop "Run all");
- demonstrations of typical mistakes are separate cells under their own names, and may assert that the checker
  rejects them;
- solutions live in code cells tagged ``solution`` and ``hide-input``, under their own names: no function a
  solution cell defines is defined or used by any other cell, so removing the solutions (the student version)
  leaves a notebook that runs, and "Run all" never overwrites the student's work;
- every chapter with exercises has at least two automatically checked ones (a stub passed to a ``check_*``).

``assignment_example.ipynb`` follows nbgrader's format instead (solution regions inside the student's cell);
``tests/test_student_notebooks.py`` runs its student version.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
NOTEBOOKS = sorted(p for p in BOOK.glob("*.ipynb") if p.name != "assignment_example.ipynb")
STUB_MARK = re.compile(r"#.*(your answer|your code)", re.IGNORECASE)


def _tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def _code_cells(path: Path) -> list[tuple[int, dict, ast.Module]]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            src = "".join(cell["source"])
            src = "\n".join(line for line in src.splitlines() if not line.lstrip().startswith(("%", "!")))
            cells.append((i, cell, ast.parse(src)))
    return cells


def _defined(tree: ast.Module) -> set[str]:
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def _used(tree: ast.Module) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _checked_functions(tree: ast.Module, defined: set[str]) -> set[str]:
    """Functions of this cell passed to a ``check_*`` call."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id.startswith("check_"):
            out |= {a.id for a in node.args if isinstance(a, ast.Name) and a.id in defined}
    return out


def _has_exercises(path: Path) -> bool:
    return "{exercise}" in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_solution_cells_are_collapsed_and_self_contained(path: Path):
    cells = _code_cells(path)
    solution = [(i, tree) for i, cell, tree in cells if "solution" in _tags(cell)]
    for i, cell, _ in cells:
        if "solution" in _tags(cell):
            assert "hide-input" in _tags(cell), f"{path.name} cell {i}: a solution cell must be tagged hide-input too"
    sol_defs = set().union(*(_defined(t) for _, t in solution)) if solution else set()
    for i, cell, tree in cells:
        if "solution" in _tags(cell):
            continue
        clash = _defined(tree) & sol_defs
        assert not clash, f"{path.name} cell {i} defines {sorted(clash)}, which a solution cell redefines"
        used = _used(tree) & sol_defs
        assert not used, f"{path.name} cell {i} uses {sorted(used)} from a solution cell: the student version breaks"


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if _has_exercises(p)], ids=lambda p: p.stem)
def test_student_cells_hold_stubs_that_only_print_feedback(path: Path):
    stubs = []
    for i, cell, tree in _code_cells(path):
        if "solution" in _tags(cell):
            continue
        src = "".join(cell["source"])
        checked = _checked_functions(tree, _defined(tree))
        asserts = any(isinstance(n, ast.Assert) for n in ast.walk(tree))
        if STUB_MARK.search(src):
            assert not asserts, f"{path.name} cell {i} is a student's cell but asserts: fixing it would raise"
            if checked:
                stubs.append(i)
        elif checked and not asserts:
            pytest.fail(f"{path.name} cell {i} checks {sorted(checked)} without asserting, but has no stub marker")
    assert len(stubs) >= 2, f"{path.name}: {len(stubs)} automatically checked exercise stubs (need at least 2)"
