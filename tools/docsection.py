"""Replace one generated section of a markdown file in place, between markers, so the benchmark tools
can refresh their tables in docs/benchmarks.md without touching the prose around them.

    <!-- begin: bench_policies -->
    ...generated...
    <!-- end: bench_policies -->
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def _split(name: str, path: Path) -> tuple[str, str, str, str, str]:
    """(text before, begin marker, the section, end marker, text after); missing markers are an error."""
    begin, end = f"<!-- begin: {name} -->", f"<!-- end: {name} -->"
    doc = path.read_text()
    if begin not in doc or end not in doc or doc.index(begin) > doc.index(end):
        raise SystemExit(f"{path}: no '{begin}' ... '{end}' markers to write the {name} tables between")
    head, rest = doc.split(begin, 1)
    section, tail = rest.split(end, 1)
    return head, begin, section, end, tail


def write_section(name: str, text: str, path: Path = DEFAULT_DOC) -> None:
    """Put text between the markers named `name` in path (which must already hold them)."""
    head, begin, _, end, tail = _split(name, path)
    path.write_text(f"{head}{begin}\n{text.strip()}\n{end}{tail}")


def read_section(name: str, path: Path = DEFAULT_DOC) -> str:
    """What lies between the markers named `name` in path."""
    return _split(name, path)[2].strip()
