"""The study's answer in a few lines: N*, D*, L* and D*/N* with intervals, at the budgets that
matter — the largest one trained (how the fit reads where it has data) and the user's targets
(what they will spend).

One definition for the terminal (`flops-fit run`) and the HTML report, so the two never
disagree on which budgets are quoted or how a number is rounded.
"""

from __future__ import annotations

from collections.abc import Sequence

from .schemas import Estimate, FitResult, Prediction

__all__ = [
    "computes",
    "flops_convention",
    "format_estimate",
    "format_headline",
    "predictions",
    "role",
]


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
    text = f"{est.value:.{digits}g}"
    if est.interval is not None:
        lo, hi = est.interval
        text += f" [{lo:.{digits}g}, {hi:.{digits}g}]"
    return text


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
