"""What flops-fit prints: the fit report, the headline, and the one way a power law is written.

One definition for the terminal (`flops-fit run`, `fit`), the HTML report and the figures, so they
never disagree on which budgets are quoted, how a number is rounded, or how a law reads. The
headline quotes N*, D*, L* and D*/N* with intervals at the budgets that matter: the largest one
trained (how the fit reads where it has data) and the user's targets (what they will spend).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .fits import LAW_NAMES

if TYPE_CHECKING:
    from .fits import Estimate, FitResult, PowerLaw, Prediction

__all__ = [
    "computes",
    "fit_report",
    "flops_convention",
    "format_estimate",
    "format_headline",
    "format_interval",
    "format_law",
    "format_number_tex",
    "predictions",
    "role",
]


def format_interval(value: float, interval: Sequence[float] | None, spec: str = ".3g") -> str:
    """`0.470 [0.410, 0.530]`: a value and its interval written with one format spec."""
    text = f"{value:{spec}}"
    if interval is not None:
        lo, hi = interval
        text += f" [{lo:{spec}}, {hi:{spec}}]"
    return text


def format_number_tex(value: float, digits: int = 3) -> str:
    """A number for mathtext: plain (`0.052`) in a readable range, `1.2\\times10^{-5}` beyond."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    if 1e3 <= abs(value) < 1e4:  # `.3g` would write 1102 as 1.1e+03
        return f"{value:.0f}"
    if 1e-3 <= abs(value) < 1e3:
        return f"{value:.{digits}g}"
    mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return rf"{mantissa}\times10^{{{int(exponent)}}}"


def format_law(law: PowerLaw, symbol: str | None = None, *, tex: bool = False) -> str:
    """The one way a power law is written.

    With a `symbol`, the equation: `N* = 0.052·C^0.470` (as mathtext with `tex=True`, for a
    figure), with the irreducible term in front when the law has one (`L* = 2.06 + 1102·C^-0.290`)
    and the exponent's interval on a second line when known. Without one, the exponent alone
    with its interval (`0.470 [0.410, 0.530]`, and `above E = 2.06` for a law with an offset:
    the exponent of E + k C^a is not comparable with that of a pure power law).
    """
    if symbol is None:
        text = format_interval(law.exponent, law.exponent_interval, ".3f")
        if law.offset is not None:
            text += f" above E = {law.offset:.3g}"
        return text
    if tex:
        power = rf"{format_number_tex(law.coefficient)}\cdot C^{{{law.exponent:.3f}}}"
        if law.offset is not None:
            power = rf"{format_number_tex(law.offset)} + {power}"
        text = rf"${symbol}^* = {power}$"
    else:
        power = f"{law.coefficient:.3g}·C^{law.exponent:.3f}"
        if law.offset is not None:
            power = f"{law.offset:.3g} + {power}"
        text = f"{symbol}* = {power}"
    if law.exponent_interval is not None:
        lo, hi = law.exponent_interval
        text += f"\nexponent {law.level:.0%} CI [{lo:.3f}, {hi:.3f}]"
    return text


def fit_report(fit: FitResult) -> str:
    """A readable, lmfit-style report of a fit (`FitResult.report()` delegates here)."""
    conv = fit.conventions
    lines = [
        "[[Fit]]",
        f"    fitter:      {fit.fitter}",
        f"    conventions: N = {conv.params} parameters, C = {conv.flops} FLOPs",
        f"    budgets:     {len(fit.optima)}{_budgets_note(fit)}",
    ]
    lines.append("[[Laws]]  X*(C) = k * C^a")
    for name in (*LAW_NAMES, *sorted(set(fit.laws) - set(LAW_NAMES))):
        law = fit.laws[name]
        a_txt = "a = " + format_interval(law.exponent, law.exponent_interval, ".4f")
        k_txt = "k = " + format_interval(law.coefficient, law.coefficient_interval, ".4g")
        r2 = f"R² = {law.r2:.4f}" if law.r2 is not None else ""
        lines.append(f"    {name:<16} {a_txt:<34} {k_txt:<36} {r2}")
        if law.offset is not None:
            lines.append(
                f"    {'':<16} + offset "
                + format_interval(law.offset, law.offset_interval, ".4g")
                + "  (irreducible term: X*(C) = offset + k * C^a)"
            )
    if fit.parametric:
        lines.append("[[Parametric]]  L = E + A/N^alpha + B/D^beta")
        for key, est in fit.parametric.items():
            lines.append(f"    {key:<6} {est}")
    lines.append("[[Optima]]")
    lines.append(f"    {'C':>10} {'N*':>22} {'D*':>22} {'L*':>10}  runs  flags")
    for opt in fit.optima:
        lines.append(
            f"    {opt.budget:>10.3g} {opt.params.value:>22.4g} {opt.tokens.value:>22.4g} "
            f"{opt.loss.value:>10.4f}  {opt.n_runs:>4}  {', '.join(opt.flags)}"
        )
    scalar = int | float | str
    shown = {k: v for k, v in fit.diagnostics.items() if isinstance(v, scalar)}
    blocks = {}  # multi-line texts (e.g. lmfit's report), printed as sections of their own
    for key, value in fit.diagnostics.items():  # one line per table of scalars
        if isinstance(value, dict):
            items = []
            for k, v in value.items():
                if isinstance(v, str) and "\n" in v:
                    blocks[f"{key}.{k}"] = v
                elif isinstance(v, scalar) or (isinstance(v, list) and len(v) <= 12):
                    items.append(f"{k}={_short(v)}")
            if items:
                shown[key] = ", ".join(items)
    if shown:
        lines.append("[[Diagnostics]]")
        lines.extend(
            f"    {k}: {v:.6g}" if isinstance(v, float) else f"    {k}: {v}"
            for k, v in shown.items()
        )
    for key, text in blocks.items():
        lines.append(f"[[{key}]]")
        lines.extend(f"    {line}" for line in text.splitlines())
    if fit.warnings:
        lines.append("[[Warnings]]")
        lines.extend(f"    - {w}" for w in fit.warnings)
    return "\n".join(lines)


def _budgets_note(fit: FitResult) -> str:
    """How the fit's budgets came about, when not from a plan or a budget column."""
    tolerance = fit.settings.get("group_tolerance")
    if isinstance(tolerance, int | float):
        return f" (runs whose C lie within {tolerance:g}% grouped: --group-tolerance {tolerance:g})"
    if fit.diagnostics.get("n_budgets") == 0 and fit.optima:
        return " (the data has none: optima at log-spaced C across the runs)"
    return ""


def _short(value: Any) -> str:
    """A diagnostic as the report prints it: floats to 4 significant digits, lists inline."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return str(value)


def computes(budgets: Sequence[float], targets: Sequence[float] = ()) -> list[float]:
    """The largest planned budget and each target not equal to it, ascending."""
    largest = max(budgets) if len(budgets) else None
    out = [] if largest is None else [float(largest)]
    for target in sorted(set(map(float, targets))):
        if largest is None or abs(target - largest) > 1e-9 * largest:
            out.append(target)
    return sorted(out)


def role(compute: float, budgets: Sequence[float]) -> str:
    """How a quoted budget relates to the data: inside the budgets fitted, or how far out."""
    if not len(budgets):
        return "target"
    lo, hi = min(budgets), max(budgets)
    if abs(compute - hi) <= 1e-9 * hi:
        return "largest budget"
    if lo <= compute <= hi:
        return "target, within the budgets"
    factor = compute / hi if compute > hi else lo / compute
    side = "beyond" if compute > hi else "below"
    times = f"{factor:.3g}" if factor < 999.5 else f"{factor:,.0f}"  # 3,800x, not 3.8e+03x
    return f"target, {times}x {side} the budgets"


def flops_convention(name: str) -> str:
    """How compute was counted, in words a reader checks against their own accounting."""
    return {"exact": "exact FLOPs, attention included", "6n": "6ND FLOPs"}.get(name, name)


def predictions(fit: FitResult, at: Sequence[float]) -> list[Prediction]:
    return [fit.predict(c) for c in at]


def format_estimate(est: Estimate, digits: int = 3) -> str:
    """`1.26e+05 [1.10e+05, 1.44e+05]`: value and interval to the same significant digits."""
    return format_interval(est.value, est.interval, f".{digits}g")


def format_headline(fit: FitResult, at: Sequence[float], budgets: Sequence[float]) -> str:
    """The headline as plain text, one row per compute budget in `at`."""
    level = fit.laws["n_opt"].level
    conv = fit.conventions
    rows = [
        (
            f"{p.compute:.3g}",
            role(p.compute, budgets),
            format_estimate(p.params),
            format_estimate(p.tokens),
            format_estimate(p.loss, 4),
            format_estimate(p.tokens_per_param),
        )
        for p in predictions(fit, at)
    ]
    header = ("C (FLOPs)", "", "N* (parameters)", "D* (tokens)", "L*", "D*/N*")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        f"Compute-optimal allocation ({fit.fitter} fit, {level:.0%} intervals; "
        f"N = {conv.params.replace('_', '-')} parameters, C = {flops_convention(conv.flops)})"
    ]
    for row in [header, *rows]:
        lines.append(
            "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        )
    return "\n".join(lines)
