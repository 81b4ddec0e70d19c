"""Reading a TOML file an operator wrote (config, policy, trace), with one clear error for every way
it can be wrong: missing, unreadable, not UTF-8 (a binary file), or not TOML."""

from __future__ import annotations

import tomllib
from pathlib import Path


class TomlFileError(ValueError):
    """What is wrong with the file, in words (without its name: the caller adds where)."""


def read_toml(path: Path) -> dict:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise TomlFileError(f"cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TomlFileError(f"not a text file (byte {exc.start} is not UTF-8); expected TOML") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TomlFileError(f"not valid TOML: {exc}") from None
