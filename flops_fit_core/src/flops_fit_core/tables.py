"""Bring your own results: read a table of runs trained elsewhere into `Observations`.

A team that trained its sweep with other tools has a table, not a `results.jsonl`: one row per
run with some of N (parameters), D (tokens), C (compute), the final loss and perhaps the budget
the run belongs to. This module turns such a table into the same `Observations` a fitter gets
from our own results, so every fitter, plotter and `predict` works on it unchanged.

Formats, by extension: `.csv` (stdlib `csv`), `.jsonl` or `.json` (JSON lines, or one JSON
array of objects), `.parquet` (pyarrow, imported only when a Parquet file is read, so a CSV
user never pays for it). Columns are found by name (`FIELDS`, `ALIASES`) or named explicitly
(`--map field=column`).

What this module refuses rather than guesses, and why:

* a bad value (empty, NaN, infinite, not a number, zero or negative) in a column that is used:
  a scaling law is fitted in log space, and one silently dropped run moves an optimum;
* a missing N or D under the `exact` FLOPs convention: C = D x FLOPs-per-token needs each
  model's shape, which a table does not have (under `6n`, C = 6ND gives the missing one);
* a budget column together with `group_tolerance`: one of the two is not meant.

What it accepts with a note in `Observations.warnings`: a derived column, exact duplicate
rows (dropped: a run listed twice would count twice), and compute values that do not fall
into clearly separated budgets (`group_compute`, `_budgets_of`): grouping runs into the wrong
budgets moves every optimum, so such a table has no budgets, `robust` fits it as it is, and a
fitter that needs budgets asks for a budget column or `--group-tolerance P`.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, InputError
from .limits import MAX_NESTING, nesting_depth
from .observations import Observations
from .schemas import Conventions

__all__ = [
    "ALIASES",
    "DEFAULT_CONVENTIONS",
    "FIELDS",
    "FORMATS",
    "RELATIVE_GAP",
    "group_by_tolerance",
    "group_compute",
    "parse_mapping",
    "read_table",
]

#: The fields a table can provide: N, D, C, the final loss, and the budget a run belongs to.
FIELDS = ("params", "tokens", "compute", "loss", "budget")

#: Column names recognised for each field besides the field's own name (matched ignoring case).
#: Short on purpose: a guess that picks the wrong column is worse than asking for `--map`.
ALIASES: dict[str, tuple[str, ...]] = {
    "params": ("N", "parameters", "n_params", "param_count"),
    "tokens": ("D", "training_tokens", "tokens_trained"),
    "compute": ("C", "flops", "compute_budget"),
    "loss": ("final_loss", "validation_loss", "val_loss", "eval_loss"),
    "budget": (),
}

_SYMBOL = {"params": "N", "tokens": "D", "compute": "C"}

#: Extensions this module reads, and the reader of each.
FORMATS = (".csv", ".jsonl", ".json", ".parquet")

#: Two sorted compute values more than this far apart (relative) belong to different budgets,
#: and no budget's values may spread wider than this (see `group_compute`). 1% is far above
#: the rounding of a planned budget (IsoFLOP sweeps space budgets by 2x or more, runs of one
#: budget differ by shape rounding of a fraction of a percent) and far below any real gap.
RELATIVE_GAP = 0.01

#: A table's conventions unless the fitter's settings say otherwise: total parameters and
#: C = 6ND, the way almost every published IsoFLOP table counts.
DEFAULT_CONVENTIONS = Conventions(params="total", flops="6n")

_SHOWN = 5  # bad or duplicate rows named in a message before "..."


@dataclass(frozen=True)
class _Raw:
    """A table as read: column names in file order, rows of raw cells, each row's id."""

    columns: tuple[str, ...]
    rows: list[dict[str, Any]]
    ids: list[str]


def parse_mapping(items: Iterable[str]) -> dict[str, str]:
    """`["loss=val_bpb", "params=n"]` as `{field: column}`; a bad item is a `ConfigError`.

    Each item must be `FIELD=COLUMN` with FIELD one of `FIELDS`; a field mapped twice is an
    error rather than "last one wins", since one of the two was a typo.
    """
    mapping: dict[str, str] = {}
    for item in items:
        field, sep, column = item.partition("=")
        field, column = field.strip(), column.strip()
        if not sep or not field or not column:
            raise ConfigError(f"--map expects FIELD=COLUMN, got {item!r}")
        _check_field(field)
        if field in mapping and mapping[field] != column:
            raise ConfigError(
                f"--map names two columns for {field!r}: {mapping[field]!r} and {column!r}"
            )
        mapping[field] = column
    return mapping


def _check_field(field: str) -> None:
    if field not in FIELDS:
        raise ConfigError(f"unknown field {field!r} in --map; valid fields: {', '.join(FIELDS)}")


def read_table(
    path: str | Path,
    mapping: Mapping[str, str] | None = None,
    conventions: Conventions | None = None,
    group_tolerance: float | None = None,
) -> Observations:
    """A user's table of runs as `Observations`, grouped into budgets where it has them.

    `mapping` ({field: column}) names columns explicitly and wins over the names in `FIELDS`
    and `ALIASES`. `conventions` states how the table counts N and C (default
    `DEFAULT_CONVENTIONS`); a missing N or D is derived from C only under `6n`. Rows are
    grouped by the `budget` column when there is one, else by clustering compute
    (`group_compute`) when that is unambiguous (`_budgets_of`); otherwise the observations
    have no budgets (`Observations.no_budgets` says why, a warning notes it). With
    `group_tolerance` (a percentage), runs whose C lie within it are grouped instead
    (`group_by_tolerance`; a budget column with it is a `ConfigError`). Every refusal is an
    `InputError` (a `ConfigError` for a bad mapping) that names the file, the column and the
    rows.
    """
    path = Path(path)
    mapping = dict(mapping or {})
    for field in mapping:
        _check_field(field)
    conventions = conventions or DEFAULT_CONVENTIONS
    source = str(path)
    raw = _read_raw(path)
    if not raw.rows:
        raise InputError(f"{source}: the table has no rows")
    columns = _resolve_columns(source, raw.columns, mapping)
    values = {field: _column_values(source, raw, field, col) for field, col in columns.items()}

    keep, warnings = _drop_duplicates(values, raw.ids)
    ids = [raw.ids[i] for i in keep]
    values = {field: arr[keep] for field, arr in values.items()}
    warnings += _derive(source, values, columns, conventions)

    no_budgets = ""
    if group_tolerance is not None:
        if "budget" in values:
            raise ConfigError(
                f"{source}: --group-tolerance groups runs by their compute, but the table has a "
                f"budget column ({columns['budget']!r}); use one or the other"
            )
        budget = group_by_tolerance(values["compute"], group_tolerance)
    elif "budget" in values:
        budget = values["budget"]
    else:
        budget, why = _budgets_of(values["compute"], ids)
        if budget is None:
            no_budgets = f"the table has no budget column and {why}"
            warnings.append(
                f"no budgets: {why}; robust fits every run, while fitters that need budgets "
                f"ask for --map budget=COLUMN or --group-tolerance P"
            )
    return Observations(
        budget=budget,
        params=values["params"],
        tokens=values["tokens"],
        compute=values["compute"],
        loss=values["loss"],
        ids=tuple(ids),
        conventions=conventions,
        source=source,
        curves=(None,) * len(ids),
        warnings=tuple(warnings),
        group_tolerance=group_tolerance,
        no_budgets=no_budgets,
    )


# -- reading ---------------------------------------------------------------------------------


def _read_raw(path: Path) -> _Raw:
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


def _read_csv(path: Path) -> _Raw:
    """Rows named `line N`, N the line the record starts on (the header is line 1)."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
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
    return _Raw(columns, rows, ids)


def _json_records(path: Path) -> Iterator[tuple[str, Any]]:
    """(id, record) for a JSON-lines file, or for a file holding one JSON array."""
    text = path.read_text(encoding="utf-8-sig")
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


def _read_json(path: Path) -> _Raw:
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
    return _Raw(tuple(columns), rows, ids)


def _read_parquet(path: Path) -> _Raw:
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
    return _Raw(columns, rows, [f"row {i + 1}" for i in range(n)])


# -- columns ---------------------------------------------------------------------------------


def _resolve_columns(
    source: str, columns: tuple[str, ...], mapping: Mapping[str, str]
) -> dict[str, str]:
    """{field: column} for each field the table provides: the mapping first, then names."""
    listed = ", ".join(columns)
    found: dict[str, str] = {}
    for field in FIELDS:
        if field in mapping:
            if mapping[field] not in columns:
                raise InputError(
                    f"{source}: --map {field}={mapping[field]}: no such column; "
                    f"the file's columns: {listed}"
                )
            found[field] = mapping[field]
            continue
        wanted = {name.lower() for name in (field, *ALIASES[field])}
        matches = [c for c in columns if c.lower() in wanted]
        if len(matches) > 1:
            raise InputError(
                f"{source}: columns {' and '.join(map(repr, matches))} could both be {field}; "
                f"choose one with --map {field}=COLUMN"
            )
        if matches:
            found[field] = matches[0]
    if "loss" not in found:
        names = ", ".join(("loss", *ALIASES["loss"]))
        raise InputError(
            f"{source}: no loss column (looked for {names}); name it with --map loss=COLUMN; "
            f"the file's columns: {listed}"
        )
    return found


def _number(cell: Any) -> float | str:
    """A cell as a float, or why it is not a usable one (a short description)."""
    if cell is None or (isinstance(cell, str) and not cell.strip()):
        return "empty"
    if isinstance(cell, bool):
        return repr(cell)
    if isinstance(cell, int | float | Decimal):
        try:
            value = float(cell)
        except OverflowError:
            return "a number beyond any float"
    elif isinstance(cell, str):
        try:
            value = float(cell.strip())
        except ValueError:
            return repr(cell.strip()[:20])
    else:
        return type(cell).__name__
    if not math.isfinite(value) or value <= 0:
        return f"{value:g}"
    return value


def _column_values(source: str, raw: _Raw, field: str, column: str) -> np.ndarray:
    out = np.empty(len(raw.rows))
    bad: list[str] = []
    for i, row in enumerate(raw.rows):
        value = _number(row.get(column))
        if isinstance(value, str):
            bad.append(f"{raw.ids[i]} ({value})")
        else:
            out[i] = value
    if bad:
        more = ", ..." if len(bad) > _SHOWN else ""
        named = repr(column) if column == field else f"{column!r} ({field})"
        raise InputError(
            f"{source}: column {named} needs positive finite numbers; "
            f"{len(bad)} bad: {', '.join(bad[:_SHOWN])}{more}"
        )
    return out


def _drop_duplicates(values: dict[str, np.ndarray], ids: list[str]) -> tuple[list[int], list[str]]:
    """Indices of the rows to keep, and a warning naming the exact duplicates dropped."""
    fields = sorted(values)
    first: dict[tuple[float, ...], int] = {}
    keep: list[int] = []
    dropped: list[str] = []
    for i in range(len(ids)):
        key = tuple(float(values[f][i]) for f in fields)
        if key in first:
            dropped.append(f"{ids[i]} (= {ids[first[key]]})")
        else:
            first[key] = i
            keep.append(i)
    warnings = []
    if dropped:
        more = ", ..." if len(dropped) > _SHOWN else ""
        warnings.append(
            f"dropped {len(dropped)} duplicate row{'s' if len(dropped) > 1 else ''} "
            f"(every used column equal to an earlier row's): {', '.join(dropped[:_SHOWN])}{more}"
        )
    return keep, warnings


def _derive(
    source: str,
    values: dict[str, np.ndarray],
    columns: dict[str, str],
    conventions: Conventions,
) -> list[str]:
    """Fill in a missing N, D or C in place; return what was derived, as warnings.

    Under `6n`, C = 6ND links the three, so any two give the third. Under `exact`,
    C = D x FLOPs-per-token(shape), and a table has no shapes: nothing is derived. A missing C
    is taken from the budget column (the planned compute) when there is one, unless N and D are
    both given under `6n`: then 6ND is each run's own compute, closer than its plan.
    """
    six_n = conventions.flops == "6n"
    warnings: list[str] = []
    have = {f for f in ("params", "tokens", "compute") if f in values}
    both = {"params", "tokens"} <= have
    if "compute" not in have and "budget" in values and not (both and six_n):
        values["compute"] = values["budget"]
        have.add("compute")
        warnings.append(f"C taken from the budget column {columns['budget']!r}")
    missing = [f for f in ("params", "tokens", "compute") if f not in have]
    if len(missing) > 1:
        given = ", ".join(f"{f} ({columns[f]!r})" for f in sorted(have)) or "none"
        raise InputError(
            f"{source}: needs two of params (N), tokens (D) and compute (C), found {given}; "
            f"name the columns with --map FIELD=COLUMN"
        )
    if not missing:
        return warnings
    (field,) = missing
    if not six_n:
        raise InputError(
            f"{source}: no {field} ({_SYMBOL[field]}) column, and it cannot be derived under the "
            f"'exact' FLOPs convention (that needs each model's shape); add the column, or fit "
            f"under C = 6ND with --set fitter.flops=6n"
        )
    if field == "compute":
        values["compute"] = 6.0 * values["params"] * values["tokens"]
        warnings.append("C derived as 6 N D")
    elif field == "params":
        values["params"] = values["compute"] / (6.0 * values["tokens"])
        warnings.append("N derived as C / (6 D)")
    else:
        values["tokens"] = values["compute"] / (6.0 * values["params"])
        warnings.append("D derived as C / (6 N)")
    return warnings


# -- grouping --------------------------------------------------------------------------------


def group_compute(
    compute: np.ndarray, ids: Iterable[str] = (), source: str = "table"
) -> np.ndarray:
    """Each row's budget, found by clustering its compute; raises on ambiguous clusters.

    Sorted, a value more than `RELATIVE_GAP` above the one before starts a new budget. A
    budget whose values then spread more than `RELATIVE_GAP` (min to max) is a chain of close
    values, not a budget: it could be split in several places, each giving different optima,
    so it is an `InputError` asking for a budget column rather than a guess. Rounding to a few
    significant digits is never used: 9.99e19 and 1.001e20 would land in different budgets.
    A budget's value is the geometric mean of its runs' compute (exactly the value when they
    all agree), the centre of its spread on the log scale the laws are fitted on.
    """
    budget, chain = _cluster(compute, ids)
    if budget is None:
        raise InputError(
            f"{source}: {chain}; add a column with each run's budget and name it with "
            f"--map budget=COLUMN, or group runs whose C lie within P% with --group-tolerance P"
        )
    return budget


def _cluster(compute: np.ndarray, ids: Iterable[str] = ()) -> tuple[np.ndarray | None, str]:
    """`group_compute`'s budgets, or None and why the compute values are ambiguous."""
    compute = np.asarray(compute, dtype=float)
    ids = list(ids) or [f"row {i + 1}" for i in range(compute.size)]
    order = np.argsort(compute, kind="stable")
    ordered = compute[order]
    starts = np.flatnonzero(ordered[1:] > ordered[:-1] * (1 + RELATIVE_GAP)) + 1
    budget = np.empty_like(compute)
    for members in np.split(order, starts):
        values = compute[members]
        lo, hi = values.min(), values.max()
        if hi > lo * (1 + RELATIVE_GAP):
            rows = [ids[i] for i in members[np.argsort(values, kind="stable")]]
            named = ", ".join(rows if len(rows) <= 3 else [*rows[:2], "...", rows[-1]])
            return None, (
                f"compute values from {lo:.4g} to {hi:.4g} ({named}) run together in steps "
                f"under {RELATIVE_GAP:.0%} but spread {hi / lo - 1:.1%}, so which runs share a "
                f"budget is ambiguous"
            )
        budget[members] = lo if lo == hi else float(np.exp(np.mean(np.log(values))))
    return budget, ""


def _budgets_of(compute: np.ndarray, ids: list[str]) -> tuple[np.ndarray | None, str]:
    """A table's budgets from its compute when they are unambiguous, else None and why.

    Unambiguous: `_cluster` finds no chain of close values, and at most half the runs are
    alone in their budget (or there is one budget). Compute spread continuously (each run its
    own C) clusters into one-run "budgets" that no IsoFLOP fit can use: no budgets then.
    """
    budget, chain = _cluster(compute, ids)
    if budget is None:
        return None, f"its compute values fall into no clearly separated budgets ({chain})"
    _, counts = np.unique(budget, return_counts=True)
    alone = int((counts == 1).sum())
    if counts.size > 1 and alone > budget.size / 2:
        return None, (
            f"its compute values do not fall into budgets: {alone} of {budget.size} runs are "
            f"alone at their C (no other run within {RELATIVE_GAP:.0%})"
        )
    return budget, ""


def group_by_tolerance(compute: np.ndarray, tolerance: float) -> np.ndarray:
    """Each row's budget when runs whose C lie within `tolerance` percent are grouped.

    Sorted by C, a run joins the current budget while its C is at most `tolerance`% above the
    budget's smallest C, and starts a new budget otherwise; so every budget's runs lie within
    `tolerance`% of each other, and the grouping does not depend on row order. A budget's
    value is the geometric mean of its runs' C, as in `group_compute`.
    """
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise ConfigError(f"--group-tolerance must be a positive percentage, got {tolerance:g}")
    compute = np.asarray(compute, dtype=float)
    factor = 1.0 + tolerance / 100.0
    order = np.argsort(compute, kind="stable")
    budget = np.empty_like(compute)
    members: list[int] = []
    for i in order:
        if members and compute[i] > compute[members[0]] * factor:
            budget[members] = np.exp(np.mean(np.log(compute[members])))
            members = []
        members.append(int(i))
    if members:
        budget[members] = np.exp(np.mean(np.log(compute[members])))
    return budget
