"""Reads the rows of a table file (CSV, JSON lines, JSON, Parquet) as raw strings and values.

One reader per format, each giving the same `RawTable` rows for `tables.read_table` to check and
convert; pyarrow is imported only when a Parquet file is read.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError
from .limits import MAX_NESTING, nesting_depth

__all__ = [
    "FORMATS",
    "RawTable",
    "read_rows",
]


#: Extensions this module reads, and the reader of each.
FORMATS = (".csv", ".jsonl", ".json", ".parquet")


@dataclass(frozen=True)
class RawTable:
    """A table as read: column names in file order, rows of raw cells, each row's id."""

    columns: tuple[str, ...]
    rows: list[dict[str, Any]]
    ids: list[str]


def read_rows(path: Path) -> RawTable:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise InputError(
            f"{path}: unknown table format {path.suffix or '(no extension)'!r}; "
            f"use one of {', '.join(FORMATS)}"
        )
    if not path.exists():
        raise InputError(f"table not found: {path}")
    try:
        if suffix == ".csv":
            return _read_csv(path)
        if suffix == ".parquet":
            return _read_parquet(path)
        return _read_json(path)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a text file ({exc.reason})") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


def _encoding(path: Path) -> str:
    """UTF-8 (a byte-order mark skipped), or UTF-16 when the file starts with its mark (what
    spreadsheets export as "Unicode text")."""
    with path.open("rb") as fh:
        start = fh.read(2)
    return "utf-16" if start in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"


def _header(path: Path, names: Iterable[Any]) -> tuple[str, ...]:
    columns = tuple(str(n).strip() for n in names)
    seen: set[str] = set()
    for name in columns:
        if not name:
            raise InputError(f"{path}: the header has an empty column name")
        if name in seen:
            raise InputError(f"{path}: column {name!r} appears twice in the header")
        seen.add(name)
    return columns


def _read_csv(path: Path) -> RawTable:
    """Rows named `line N`, N the line the record starts on (the header is line 1)."""
    with path.open(newline="", encoding=_encoding(path)) as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
            while not any(cell.strip() for cell in header):
                header = next(reader)
        except StopIteration:
            raise InputError(f"{path}: the file is empty") from None
        except csv.Error as exc:
            raise InputError(f"{path}:{reader.line_num}: {exc}") from None
        columns = _header(path, header)
        _check_separator(path, columns)
        rows, ids = [], []
        end = reader.line_num
        try:
            for cells in reader:
                start, end = end + 1, reader.line_num
                if not any(cell.strip() for cell in cells):
                    continue
                if len(cells) > len(columns):
                    raise InputError(
                        f"{path}: line {start} has {len(cells)} cells, the header {len(columns)}"
                    )
                rows.append(dict(zip(columns, cells, strict=False)))
                ids.append(f"line {start}")
        except csv.Error as exc:
            raise InputError(f"{path}:{reader.line_num}: {exc}") from None
    return RawTable(columns, rows, ids)


def _check_separator(path: Path, columns: tuple[str, ...]) -> None:
    """A header read as one column that holds `;` or a tab is a table separated by those (a
    spreadsheet's export in some locales): say so, rather than list one odd column name."""
    if len(columns) != 1:
        return
    for separator, name in ((";", "semicolons"), ("\t", "tabs")):
        if separator in columns[0]:
            raise InputError(
                f"{path}: the header {columns[0]!r} separates its cells with {name}; a .csv "
                f"table is read with commas between cells (save or export it comma-separated)"
            )


def _json_records(path: Path) -> Iterator[tuple[str, Any]]:
    """(id, record) for a JSON-lines file, or for a file holding one JSON array."""
    text = path.read_text(encoding=_encoding(path))
    if text.lstrip().startswith("["):
        for number, record in enumerate(_loads(path, text, ""), start=1):
            yield f"record {number}", record
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield f"line {number}", _loads(path, line, f"line {number} ")


def _loads(path: Path, text: str, where: str) -> Any:
    """JSON text as Python values; what Python's parser cannot take (nesting past
    `MAX_NESTING`, an integer of more than 4,300 digits) is an InputError."""
    if nesting_depth(text) > MAX_NESTING:
        raise InputError(
            f"{path}: {where}nested too deeply (more than {MAX_NESTING} levels of [ ] or {{ }})"
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        at = "" if where else f", line {exc.lineno}"
        raise InputError(f"{path}: {where or ''}is not valid JSON ({exc.msg}{at})") from None
    except (ValueError, RecursionError) as exc:  # int digits limit, deep nesting
        why = "holds a number of more than 4,300 digits" if "digits" in str(exc) else str(exc)
        raise InputError(f"{path}: {where or 'the file '}{why}") from None


def _read_json(path: Path) -> RawTable:
    """Rows named `line N` (JSON lines) or `record N` (a JSON array); keys are the columns."""
    columns: dict[str, None] = {}
    rows, ids = [], []
    for rid, record in _json_records(path):
        if not isinstance(record, dict):
            raise InputError(
                f"{path}: {rid} is a JSON {type(record).__name__}, not an object of columns"
            )
        record = {str(k).strip(): v for k, v in record.items()}
        columns.update(dict.fromkeys(record))
        rows.append(record)
        ids.append(rid)
    if not rows:
        raise InputError(f"{path}: the file is empty")
    return RawTable(tuple(columns), rows, ids)


def _read_parquet(path: Path) -> RawTable:
    """Rows named `row N`, counted from 1."""
    try:
        import pyarrow.parquet as pq  # lazily: only Parquet users pay for importing pyarrow
    except ImportError:  # pragma: no cover - pyarrow is a dependency of flops-fit-core
        raise InputError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
    try:
        table = pq.read_table(path)
    except OSError:
        raise
    except Exception as exc:  # pyarrow raises ArrowInvalid & co. for a malformed file
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
    columns = _header(path, table.column_names)
    data = {name: table.column(i).to_pylist() for i, name in enumerate(columns)}
    n = table.num_rows
    rows = [{name: data[name][i] for name in columns} for i in range(n)]
    return RawTable(columns, rows, [f"row {i + 1}" for i in range(n)])
