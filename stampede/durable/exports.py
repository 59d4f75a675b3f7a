"""Exports of a whole listing as CSV or NDJSON, of any size, in bounded memory.

An export walks its listing's keyset pages (stampede/durable/queries.py) one
chunk at a time and yields each chunk encoded: at most one chunk of rows is
ever held, however many rows the export has, and every chunk is its own short
read, so a long download never holds a transaction open on the store.
"""

import csv
import io
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, Literal

import msgspec

from stampede.durable.queries import Fetch

Format = Literal["csv", "ndjson"]
FORMATS: dict[str, Format] = {"csv": "csv", "ndjson": "ndjson"}
MEDIA_TYPES: dict[Format, str] = {"csv": "text/csv", "ndjson": "application/x-ndjson"}
CHUNK = 1000

_encode = msgspec.json.Encoder().encode


async def rows(fetch: Fetch, chunk: int = CHUNK) -> AsyncIterator[msgspec.Struct]:
    """Every row of a listing, page after page."""
    cursor: str | None = None
    while True:
        page = await fetch(cursor, chunk)
        for item in page.items:
            yield item
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


async def encoded(fetch: Fetch, fmt: Format, columns: Sequence[str],
                  chunk: int = CHUNK) -> AsyncIterator[bytes]:
    """The listing as `fmt`, one encoded chunk of rows at a time (CSV: a header first)."""
    if fmt == "csv":
        yield _csv_lines([list(columns)])
    cursor: str | None = None
    while True:
        page = await fetch(cursor, chunk)
        if fmt == "csv":
            yield _csv_lines([[_cell(getattr(item, c)) for c in columns] for item in page.items])
        else:
            yield b"".join(_encode(item) + b"\n" for item in page.items)
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def _cell(value: Any) -> str:
    """A CSV cell: nested values as JSON, None as empty."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return _encode(value).decode()
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _csv_lines(lines: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(lines)
    return out.getvalue().encode()
