"""Replace one generated section of a markdown file in place, between markers, so the benchmark tools
can refresh their tables in docs/benchmarks.md without touching the prose around them.

    <!-- begin: bench_policies -->
    ...generated...
    <!-- end: bench_policies -->
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def write_section(name: str, text: str, path: Path = DEFAULT_DOC) -> None:
    """Put text between the markers named `name` in path (which must already hold them)."""
    begin, end = f"<!-- begin: {name} -->", f"<!-- end: {name} -->"
    doc = path.read_text()
    if begin not in doc or end not in doc or doc.index(begin) > doc.index(end):
        raise SystemExit(f"{path}: no '{begin}' ... '{end}' markers to write the {name} tables between")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{text.strip()}\n{end}{tail}")


def read_section(name: str, path: Path = DEFAULT_DOC) -> str:
    """What lies between the markers named `name` in path."""
    begin, end = f"<!-- begin: {name} -->", f"<!-- end: {name} -->"
    doc = path.read_text()
    return doc.split(begin, 1)[1].split(end, 1)[0].strip()
