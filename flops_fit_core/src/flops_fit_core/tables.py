"""Bring your own results: read a table of runs trained elsewhere into `Observations`.

A team that trained its sweep with other tools has a table, not a `results.jsonl`: one row per
run with some of N (parameters), D (tokens), C (compute), the final loss and perhaps the budget
the run belongs to. This module turns such a table into the same `Observations` a fitter gets
from our own results, so every fitter, plotter and `predict` works on it unchanged.

Formats, by extension: `.csv` (stdlib `csv`), `.jsonl` or `.json` (JSON lines, or one JSON
array of objects), `.parquet` (pyarrow, imported only when a Parquet file is read, so a CSV
user never pays for it); `table_files` reads each format's rows, `grouping` finds budgets in
a compute column, and this module checks and converts the columns. Columns are found by name
(`FIELDS`, `ALIASES`) or named explicitly (`--map field=column`).

What this module refuses rather than guesses, and why:

* a bad value (empty, NaN, infinite, not a number, zero or negative) in a column that is used:
  a scaling law is fitted in log space, and one silently dropped run moves an optimum;
* a missing N or D under the `exact` FLOPs convention: C = D x FLOPs-per-token needs each
  model's shape, which a table does not have (under `6n`, C = 6ND gives the missing one);
* a budget column together with `group_tolerance`: one of the two is not meant.

What it accepts with a note in `Observations.warnings`: a derived column, exact duplicate
rows (dropped: a run listed twice would count twice), and compute values that do not fall
into clearly separated budgets (`group_compute`, `budgets_of`): grouping runs into the wrong
budgets moves every optimum, so such a table has no budgets, `robust` fits it as it is, and a
fitter that needs budgets asks for a budget column or `--group-tolerance P`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, InputError
from .grouping import budgets_of, group_by_tolerance
from .observations import Observations
from .schemas import Conventions
from .table_files import RawTable, read_rows

__all__ = [
    "ALIASES",
    "DEFAULT_CONVENTIONS",
    "FIELDS",
    "parse_mapping",
    "read_table",
]

#: The fields a table can provide: N, D, C, the final loss, the budget a run belongs to, and
#: the run a row is a checkpoint of (a checkpoint table, one row per checkpoint).
FIELDS = ("params", "tokens", "compute", "loss", "budget", "run")

#: The fields that hold numbers (`run` holds names).
NUMERIC_FIELDS = FIELDS[:-1]

#: Column names recognised for each field besides the field's own name (matched ignoring case).
#: Short on purpose: a guess that picks the wrong column is worse than asking for `--map`.
ALIASES: dict[str, tuple[str, ...]] = {
    "params": ("N", "parameters", "n_params", "param_count"),
    "tokens": ("D", "training_tokens", "tokens_trained"),
    "compute": ("C", "flops", "compute_budget"),
    "loss": ("final_loss", "validation_loss", "val_loss", "eval_loss"),
    "budget": (),
    "run": ("run_id", "run_name"),
}

_SYMBOL = {"params": "N", "tokens": "D", "compute": "C"}


#: A table's conventions unless the fitter's settings say otherwise: total parameters and
#: C = 6ND, the way almost every published IsoFLOP table counts.
DEFAULT_CONVENTIONS = Conventions(params="total", flops="6n")

_SHOWN = 5  # bad or duplicate rows named in a message before "..."


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

    A table with a `run` column (`run`, `run_id`, `run_name`, or `--map run=COLUMN`) is a
    checkpoint table in long form: one row per checkpoint, in any order. Each run becomes one
    observation, its last checkpoint (most tokens) as its final result and all of its
    checkpoints as its loss curve (`_collapse_checkpoints`).

    `mapping` ({field: column}) names columns explicitly and wins over the names in `FIELDS`
    and `ALIASES`. `conventions` states how the table counts N and C (default
    `DEFAULT_CONVENTIONS`); a missing N or D is derived from C only under `6n`. Rows are
    grouped by the `budget` column when there is one, else by clustering compute
    (`group_compute`) when that is unambiguous (`budgets_of`); otherwise the observations
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
    raw = read_rows(path)
    if not raw.rows:
        raise InputError(f"{source}: the table has no rows")
    columns = _resolve_columns(source, raw.columns, mapping)
    run_column = columns.get("run")
    values = {
        field: _column_values(source, raw, field, col)
        for field, col in columns.items()
        if field != "run"
    }
    runs = None if run_column is None else _run_names(source, raw, run_column)

    keep, warnings = _drop_duplicates(values, raw.ids, runs)
    ids = [raw.ids[i] for i in keep]
    values = {field: arr[keep] for field, arr in values.items()}
    warnings += _derive(source, values, columns, conventions)
    curves: tuple = (None,) * len(ids)
    if runs is not None:
        ids, curves = _collapse_checkpoints(source, values, [runs[i] for i in keep], ids)

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
        budget, why = budgets_of(values["compute"], ids)
        if budget is None:
            no_budgets = f"the table has no budget column and {why}"
            warnings.append(
                f"no budgets: {why}; robust and envelope fit every run, while fitters that need "
                f"budgets ask for --map budget=COLUMN or --group-tolerance P"
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
        curves=curves,
        warnings=tuple(warnings),
        group_tolerance=group_tolerance,
        no_budgets=no_budgets,
    )


# -- reading ---------------------------------------------------------------------------------


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


def _column_values(source: str, raw: RawTable, field: str, column: str) -> np.ndarray:
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


def _drop_duplicates(
    values: dict[str, np.ndarray], ids: list[str], runs: list[str] | None = None
) -> tuple[list[int], list[str]]:
    """Indices of the rows to keep, and a warning naming the exact duplicates dropped (rows of
    different runs are never duplicates of each other)."""
    fields = sorted(values)
    first: dict[tuple, int] = {}
    keep: list[int] = []
    dropped: list[str] = []
    for i in range(len(ids)):
        key = (runs[i] if runs else "", *(float(values[f][i]) for f in fields))
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

        def named(field: str) -> str:  # C taken from the budget column has none of its own
            if field in columns:
                return f"{field} ({columns[field]!r})"
            return f"{field} (from the budget column {columns['budget']!r})"

        given = ", ".join(named(f) for f in sorted(have)) or "none"
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


# -- checkpoint tables -----------------------------------------------------------------------


def _run_names(source: str, raw: RawTable, column: str) -> list[str]:
    """The run each row is a checkpoint of, as text; an empty cell is an `InputError`."""
    names, empty = [], []
    for i, row in enumerate(raw.rows):
        cell = row.get(column)
        name = "" if cell is None else str(cell).strip()
        if not name:
            empty.append(raw.ids[i])
        names.append(name)
    if empty:
        more = ", ..." if len(empty) > _SHOWN else ""
        raise InputError(
            f"{source}: column {column!r} (run) names the run of each checkpoint; "
            f"{len(empty)} empty: {', '.join(empty[:_SHOWN])}{more}"
        )
    return names


def _collapse_checkpoints(
    source: str, values: dict[str, np.ndarray], runs: list[str], rows: list[str]
) -> tuple[list[str], tuple[list[tuple[float, float]], ...]]:
    """One row per run in `values` (in place): its last checkpoint, and its curve.

    Runs are ordered by name and each run's checkpoints by tokens, so the observations (and
    every fit of them) do not depend on the order of the table's rows. A run whose rows
    disagree on N or on the budget, or that has two checkpoints at one token count, is an
    `InputError`: the rows of two runs were given one name.
    """
    order: dict[str, list[int]] = {}
    for i, run in enumerate(runs):
        order.setdefault(run, []).append(i)
    finals, curves = [], []
    for run in sorted(order):
        index = np.array(order[run])
        index = index[np.argsort(values["tokens"][index], kind="stable")]
        for field in ("params", "budget"):
            if field in values and np.ptp(values[field][index]) > 1e-9 * values[field][index[0]]:
                raise InputError(
                    f"{source}: run {run!r} has checkpoints with different {field} "
                    f"({', '.join(rows[i] for i in index[:3])}); one run has one {field}"
                )
        tokens = values["tokens"][index]
        if np.any(np.diff(tokens) <= 0):
            at = float(tokens[np.flatnonzero(np.diff(tokens) <= 0)[0]])
            raise InputError(
                f"{source}: run {run!r} has two checkpoints at {at:.6g} tokens with different "
                f"losses; one run has one loss per checkpoint"
            )
        finals.append(int(index[-1]))
        curves.append(
            [(float(t), float(v)) for t, v in zip(tokens, values["loss"][index], strict=True)]
        )
    for field, column in values.items():
        values[field] = column[finals]
    return sorted(order), tuple(curves)


# -- grouping --------------------------------------------------------------------------------
