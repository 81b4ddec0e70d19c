"""Regenerate the sections of the docs written from the code: the control commands in docs/api.md
(from governor/protocol.py) and the keys a reload applies in docs/architecture.md (from the config
schema). Tests fail when these sections and the code disagree; run this after changing either.

    python tools/gen_docs.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from docsection import write_section  # noqa: E402

from governor.config import reload_keys  # noqa: E402
from governor.protocol import commands_markdown  # noqa: E402

DOCS = Path(__file__).resolve().parent.parent / "docs"


def reload_keys_markdown() -> str:
    applied, restart = reload_keys()
    return ("Applied by a reload: " + ", ".join(f"`{k}`" for k in applied) + ".\n\n"
            "Need a restart (a reload that changes them is refused): " + ", ".join(f"`{k}`" for k in restart) + ".")


def main() -> None:
    write_section("commands", commands_markdown(), DOCS / "api.md")
    write_section("reload-keys", reload_keys_markdown(), DOCS / "architecture.md")


if __name__ == "__main__":
    main()
