"""The reading conventions of BOOK_PLAN, checked on every chapter (the reader's path is the idea; the audit trail
is one click away).

Static checks on the committed notebooks:

- every chapter opens with a "Sources" admonition and links at least three glossary terms with ``{term}``;
- the running text of the chapters and the proofs appendix (everything outside collapsed dropdowns) has no
  Chinese and no source file names; quotations of the source notes live in the erratum dropdowns and in the errata
  appendix, which is exempt;
- no section heading is about a slip of the sources.

One check on the outputs of the book build (the execution cache ``_build/.jupyter_cache`` written by
``bash scripts/build.sh``, which ``scripts/test.sh`` runs first; the copies in ``_build/jupyter_execute`` carry no
outputs): a collapsed check cell prints one line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CACHE = ROOT / "_build" / ".jupyter_cache"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb")) + [BOOK / "quickstart.ipynb"]
RUNNING_TEXT_PAGES = CHAPTERS + [BOOK / "proofs.ipynb"]

CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
SOURCE_FILE = re.compile(r"\b\d{3}_[0-9a-f]{16}\b")
SLIP_HEADING = re.compile(r"^#+ .*\b(errat\w*|slips?|typos?|seeds?|source notes?)\b", re.IGNORECASE | re.MULTILINE)
FENCE = re.compile(r"^\s*(`{3,}|:{3,})\{([\w:-]+)\}")


def _markdown(path: Path) -> list[str]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]


def running_text(md: str) -> str:
    """``md`` without its collapsed blocks: ``{dropdown}`` directives and directives whose ``:class:`` has dropdown."""
    lines, out, i = md.splitlines(), [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            out.append(lines[i])
            i += 1
            continue
        fence, j, depth = m.group(1), i + 1, 0
        while j < len(lines):  # the closing fence: the same characters alone on a line (nested blocks counted)
            inner = FENCE.match(lines[j])
            if inner and inner.group(1) == fence:
                depth += 1
            elif lines[j].strip() == fence:
                if depth == 0:
                    break
                depth -= 1
            j += 1
        block = lines[i:j + 1]
        collapsed = m.group(2) == "dropdown" or any(
            line.strip().startswith(":class:") and "dropdown" in line for line in block[1:])
        if not collapsed:
            out.extend(block)
        i = j + 1
    return "\n".join(out)


def test_running_text_drops_dropdowns_only():
    md = ("before\n:::{admonition} Erratum\n:class: warning, dropdown\n源\n:::\nmiddle\n"
          "```{admonition} Sources\n:class: note\nkept\n```\n````{dropdown} x\n```{math}\na\n```\n源\n````\nafter")
    assert running_text(md).split("\n") == ["before", "middle", "```{admonition} Sources", ":class: note", "kept",
                                            "```", "after"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_names_its_sources_and_links_glossary_terms(path: Path):
    cells = _markdown(path)
    assert any(re.search(r"\{admonition\} Sources\b", md) for md in cells[:3]), \
        f"{path.name}: no 'Sources' admonition at the top"
    terms = {t.lower() for md in cells for t in re.findall(r"\{term\}`([^`]+)`", md)}
    assert len(terms) >= 3, f"{path.name}: {len(terms)} glossary terms linked with {{term}} (need at least 3)"


@pytest.mark.parametrize("path", RUNNING_TEXT_PAGES, ids=lambda p: p.stem)
def test_running_text_has_no_source_quotes_or_slip_headings(path: Path):
    for md in _markdown(path):
        text = running_text(md)
        for pattern, what in ((CJK, "Chinese text"), (SOURCE_FILE, "a source file name"),
                              (SLIP_HEADING, "a heading about the sources")):
            m = pattern.search(text)
            assert not m, (f"{path.name}: {what} in the running text ({text[max(0, m.start() - 60):m.end() + 20]!r}); "
                           "put source quotations in an erratum dropdown")


@pytest.mark.parametrize("path", CHAPTERS + [BOOK / "proofs.ipynb", BOOK / "errata.ipynb"], ids=lambda p: p.stem)
def test_collapsed_check_cells_print_one_line(path: Path):
    import nbformat
    from jupyter_cache import get_cache

    assert CACHE.is_dir(), f"{CACHE} is missing: run `bash scripts/build.sh` first"
    try:
        _, nb = get_cache(CACHE).merge_match_into_notebook(nbformat.read(path, as_version=4))
    except KeyError:
        pytest.fail(f"{path.name} has no up-to-date executed version in {CACHE}: run `bash scripts/build.sh` first")
    assert any(c.outputs for c in nb.cells if c.cell_type == "code"), f"{path.name}: the cached notebook has no outputs"
    bad = _multi_line_checks(nb)
    assert not bad, f"{path.name}: collapsed checks printing more than one line (cell, lines): {bad}"


def _multi_line_checks(nb) -> list[tuple[int, list[str]]]:
    """(index, printed lines) of every collapsed, non-solution code cell that prints more than one line."""
    bad = []
    for i, cell in enumerate(nb.cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.cell_type != "code" or "hide-input" not in tags or "solution" in tags:
            continue
        text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) > 1:
            bad.append((i, lines[:3]))
    return bad


def test_multi_line_checks_are_found():
    import nbformat

    def cell(text, tags):
        c = nbformat.v4.new_code_cell("print()", metadata={"tags": tags})
        c.outputs = [nbformat.v4.new_output("stream", text=text)]
        return c

    nb = nbformat.v4.new_notebook()
    nb.cells = [cell("a\nb\n", ["hide-input"]), cell("one line\n", ["hide-input"]), cell("a\nb\n", []),
                cell("a\nb\n", ["solution", "hide-input"])]
    assert _multi_line_checks(nb) == [(0, ["a", "b"])]
