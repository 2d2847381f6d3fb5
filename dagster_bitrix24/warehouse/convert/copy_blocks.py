"""PostgreSQL COPY text in blocks, from a compiled line builder (`Conversions.line_builder`).

Most values the portal sends are already the text PostgreSQL parses into the value the
Python converters produce ("42", "1500.00", "2024-09-02T18:37:18+03:00"): the line builder
writes those untouched (`rules.Rule.copy`). A block is checked as a whole: a NUL byte makes
the converters name a reject; a value holding a tab, newline, carriage return or backslash
has its block rebuilt escaped, value by value.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from itertools import pairwise
from typing import Any

from dagster_bitrix24.warehouse.convert.compile import LineBuilder, ValueBuilder
from dagster_bitrix24.warehouse.convert.values import Unstorable

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_blocks(
    lines: LineBuilder, values: ValueBuilder, rows: Sequence[Mapping[str, Any]], tail: str,
    *, width: int, size: int = 1_000, first: int = 200,
) -> Iterator[str]:  # fmt: skip
    """COPY text of `rows` in blocks of `size` rows, built as they are sent (the server
    parses one block while the next is built; the `first` block is short, as the server
    waits for it); `width` is the number of columns."""
    bounds = [0, *range(first, len(rows), size), len(rows)] if rows else []
    for start, end in pairwise(bounds):
        part = rows[start:end]
        block = "\n".join(lines(part, tail)) + "\n"
        if "\x00" in block:  # text with a NUL byte: the converters make it a reject
            raise Unstorable("NUL byte")
        if (
            "\\" in block or "\r" in block or block.count("\n") != len(part)
            or block.count("\t") != len(part) * (width - 1)
        ):  # fmt: skip
            block = _escaped(part, values, tail)
        yield block


def _escaped(part: Sequence[Mapping[str, Any]], values: ValueBuilder, tail: str) -> str:
    return "".join(
        "\t".join(value.translate(_ESCAPES) for value in row) + tail + "\n" for row in values(part)
    )
