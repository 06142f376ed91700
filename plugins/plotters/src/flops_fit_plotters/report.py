"""The `report` plotter: one self-contained HTML page with the study's answer and its evidence.

A scaling study ends in a meeting where someone asks "how sure are we?". The page answers in
the order people ask: the headline (N*, D*, L* and D*/N* with intervals at the largest budget
and at each target), the fits side by side (every fitter the study ran, with its intervals),
the figures, every warning, the runs, the resolved config and the environment. Figures are
embedded as SVG data URIs, so the file can be mailed or attached to a ticket and still show
everything; nothing is fetched from the network. Rendering is deterministic (no timestamps),
so a rerun of an unchanged study rewrites the same bytes.
"""

from __future__ import annotations

import base64
import json
import platform
import sys
from collections import Counter
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import tomli_w

from flops_fit_core import (
    FitResult,
    NothingToDraw,
    Observations,
    StudyOutcome,
    computes,
    flops_convention,
    format_estimate,
    pipeline,
    predictions,
    role,
)

from .base import FigureConfig, FigurePlotter
from .style import figure_bytes, format_budget, write_atomic

__all__ = ["REPORT_FILE", "ReportPlotter", "environment", "figure_plotters"]

#: The report's file name, in the run directory (or the plot output directory): the core's,
#: which `flops-fit run` looks for to print the report's path.
REPORT_FILE = pipeline.REPORT_FILE

#: Distributions whose versions the environment section lists when installed.
_PACKAGES = (
    "flops-fit-core",
    "flops-fit-planners",
    "flops-fit-mock",
    "flops-fit-torch",
    "flops-fit-fitters",
    "flops-fit-plotters",
    "numpy",
    "scipy",
    "lmfit",
    "matplotlib",
    "pydantic",
    "torch",
    "datasets",
    "tokenizers",
)

#: What each figure shows and what a reader should look for in it.
_CAPTIONS = {
    "isoflop": (
        "IsoFLOP profiles: final loss against model size at each compute budget. Each "
        "budget's runs should trace a valley with the fitted optimum (star, with its "
        "interval) at the bottom. A hollow star is flagged: its minimum is at the edge of the "
        "sizes tried or the sizes are off-centre, so that budget's optimum is less certain."
    ),
    "scaling": (
        "Compute-optimal model size N* and tokens D* against compute: the per-budget optima, "
        "the fitted power laws (solid over the budgets, dashed beyond) and their confidence "
        "bands. How fast the band widens shows how far the laws can be trusted."
    ),
    "frontier": (
        "The best loss reachable at each compute, L*(C), with its law and band: the return "
        "on more compute."
    ),
    "parametric": (
        "The fitted loss surface L(N, D) as contours, with the runs, the iso-FLOP lines of "
        "the budgets and the compute-optimal frontier where each iso-FLOP line touches the "
        "lowest contour."
    ),
    "residuals": (
        "Residuals of each run's loss from the fit's own model of it, by budget and by "
        "model size. They should scatter around zero without a trend; a pattern means the "
        "model's shape does not fit the data."
    ),
    "curves": "Loss against tokens during training, one panel per budget.",
}


def figure_plotters() -> list[type[FigurePlotter]]:
    """Every figure of this package, in reading order: what the report embeds and, with the
    report, what the package registers (imported here, late: none of them imports us)."""
    from .curves import CurvesPlotter
    from .frontier import FrontierPlotter
    from .isoflop import IsoFlopPlotter
    from .parametric import ParametricPlotter
    from .residuals import ResidualsPlotter
    from .scaling import ScalingPlotter

    return [
        IsoFlopPlotter,
        ScalingPlotter,
        FrontierPlotter,
        ParametricPlotter,
        ResidualsPlotter,
        CurvesPlotter,
    ]


def environment() -> dict[str, str]:
    """Python, platform and the versions of the packages a study's numbers depend on."""
    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    for name in _PACKAGES:
        try:
            env[name] = version(name)
        except PackageNotFoundError:
            continue
    return env


@dataclass(frozen=True)
class _Figure:
    name: str
    caption: str
    data_uri: str | None = None
    skipped: str | None = None


def _svg_uri(svg: bytes) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")


def _law_text(fit: FitResult, key: str) -> str:
    """An exponent with its interval; with the irreducible term when the law has one (the
    exponent of E + k C^a is not comparable with that of a pure power law)."""
    law = fit.laws[key]
    text = f"{law.exponent:.3f}"
    if law.exponent_interval is not None:
        lo, hi = law.exponent_interval
        text += f" [{lo:.3f}, {hi:.3f}]"
    if law.offset is not None:
        text += f" above E = {law.offset:.3g}"
    return text


def _runs_summary(outcome: StudyOutcome, observations: Observations) -> dict[str, Any]:
    budgets = observations.budgets if observations.has_budgets else observations.compute
    devices = Counter(r.device or "unknown" for r in outcome.runs)
    trainers = Counter(f"{r.trainer.name} {r.trainer.version}" for r in outcome.runs)
    failed = [r for r in outcome.runs if r.status == "failed"]
    return {
        "n_ok": len(observations),
        "n_budgets": len(budgets) if observations.has_budgets else 0,
        "budget_range": (format_budget(budgets.min()), format_budget(budgets.max())),
        "devices": ", ".join(f"{d} ({n})" for d, n in sorted(devices.items())),
        "trainers": ", ".join(f"{t} ({n})" for t, n in sorted(trainers.items())),
        "failed": [(r.experiment_id, r.error or "") for r in failed],
        "source": _shown_source(observations.source, outcome.run_dir),
    }


def _shown_source(source: str, run_dir) -> str:
    """The data's path, relative to the run directory when it lies inside it: the page then
    reads the same wherever the directory is (copied, moved, rebuilt by `flops-fit report`)."""
    if run_dir is None or not source:
        return source
    try:
        return str(Path(source).resolve().relative_to(Path(run_dir).resolve()))
    except ValueError:
        return source


def _run_rows(outcome: StudyOutcome, observations: Observations) -> list[dict[str, str]]:
    if outcome.runs:
        rows = sorted(outcome.runs, key=lambda r: (r.spec.budget, r.spec.params))
        return [
            {
                "id": r.experiment_id,
                "budget": format_budget(r.spec.budget, 2),
                "params": f"{r.spec.params:.4g}",
                "tokens": f"{(r.tokens_trained or r.spec.tokens):.4g}",
                "loss": "" if r.loss is None else f"{r.loss:.4f}",
                "status": r.status,
                "wall": "" if r.wall_time_s is None else f"{r.wall_time_s:.1f}",
            }
            for r in rows
        ]
    budget = observations.budget if observations.has_budgets else None
    order = sorted(
        range(len(observations)),
        key=lambda i: (observations.compute[i] if budget is None else budget[i], i),
    )
    return [
        {
            "id": observations.ids[i],
            "budget": "" if budget is None else format_budget(budget[i], 2),
            "params": f"{observations.params[i]:.4g}",
            "tokens": f"{observations.tokens[i]:.4g}",
            "loss": f"{observations.loss[i]:.4f}",
            "status": "ok",
            "wall": "",
        }
        for i in order
    ]


def _warnings(outcome: StudyOutcome) -> list[tuple[str, list[str]]]:
    """(where, messages) groups, each message once; empty groups left out."""
    groups: list[tuple[str, list[str]]] = [("study", list(outcome.notes))]
    kinds = {
        (f.conventions.params, f.conventions.flops, f.laws["n_opt"].level) for f in outcome.fits
    }
    if len(kinds) > 1:
        groups.append(
            (
                "comparison",
                [
                    "the fits count N or C differently, or state intervals at different "
                    "levels (see the last two columns of the side-by-side table): compare "
                    "their numbers with care"
                ],
            )
        )
    if outcome.plan is not None:
        groups.append(("plan", list(outcome.plan.warnings)))
    for fit in outcome.fits:
        flagged = [
            f"budget {format_budget(o.budget)}: {', '.join(o.flags)}" for o in fit.optima if o.flags
        ]
        groups.append((f"{fit.fitter} fit", [*fit.warnings, *flagged]))
    run_warnings = Counter(w for r in outcome.runs for w in r.warnings)
    groups.append(
        ("runs", [w if n == 1 else f"{w} ({n} runs)" for w, n in sorted(run_warnings.items())])
    )
    failed = [f"{r.experiment_id}: {r.error}" for r in outcome.runs if r.status == "failed"]
    groups.append(("failed runs", failed))
    return [(where, list(dict.fromkeys(msgs))) for where, msgs in groups if msgs]


def _config_text(outcome: StudyOutcome) -> str:
    if outcome.config is not None:
        return tomli_w.dumps(outcome.config)
    settings = {fit.fitter: fit.settings for fit in outcome.fits}
    return json.dumps(settings, indent=2, sort_keys=True, default=str)


class ReportPlotter(FigurePlotter):
    """Writes `report.html`: in the run directory when there is one, else in `out_dir`."""

    name = "report"
    Config = FigureConfig

    def draw(self, outcome: StudyOutcome, out_dir: Path) -> list[Path]:
        folder = Path(outcome.run_dir) if outcome.run_dir is not None else Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / REPORT_FILE
        try:
            page = self.render(outcome)
        except BaseException:
            path.unlink(missing_ok=True)  # never leave an earlier study's page looking current
            raise
        write_atomic(path, page.encode("utf-8"))
        return [path]

    def figures(self, outcome: StudyOutcome) -> list[_Figure]:
        """Each figure of the outcome as an SVG data URI, or the reason it was left out.

        A figure the study's plotters have just written as SVG for this outcome (with the same
        `[plot]` options) is embedded from its file rather than drawn a second time.
        """
        options = {"targets": self.config.targets, "dpi": self.config.dpi, "formats": ("svg",)}
        written = {Path(p).name: Path(p) for p in outcome.drawn}
        out = []
        for cls in figure_plotters():
            caption = _CAPTIONS.get(cls.name, "")
            if f"{cls.name}.svg" in written:
                svg = written[f"{cls.name}.svg"].read_bytes()
                out.append(_Figure(cls.name, caption, data_uri=_svg_uri(svg)))
                continue
            try:
                fig = cls(cls.Config(**options)).figure_for(outcome)
            except NothingToDraw as exc:
                out.append(_Figure(cls.name, caption, skipped=str(exc)))
                continue
            except Exception as exc:  # one figure never costs the reader the whole page
                reason = f"could not be drawn: {str(exc).splitlines()[0] if str(exc) else exc!r}"
                out.append(_Figure(cls.name, caption, skipped=reason))
                continue
            out.append(
                _Figure(
                    cls.name, caption, data_uri=_svg_uri(figure_bytes(fig, "svg", self.config.dpi))
                )
            )
        return out

    def context(self, outcome: StudyOutcome) -> dict[str, Any]:
        """Everything the template shows, as plain values (tests read it directly)."""
        fit, observations = outcome.fit, outcome.primary_observations
        planned = list(outcome.plan.budgets) if outcome.plan is not None else []
        budgets = planned or [float(b) for b in observations.budgets]
        if not budgets and fit.optima:  # runs without budgets: the C the fit reported at
            budgets = [o.budget for o in fit.optima]
        at = computes(budgets, self.config.targets)
        # By position, not by name: two fits of one fitter (different options) stay apart.
        quoted = [predictions(f, at) for f in outcome.fits]
        title = Path(outcome.run_dir).name if outcome.run_dir is not None else observations.source
        return {
            "title": title or "flops-fit study",
            "fit": fit,
            "fits": outcome.fits,
            "level": fit.laws["n_opt"].level,
            "conventions": {
                "params": fit.conventions.params.replace("_", "-"),
                "flops": flops_convention(fit.conventions.flops),
            },
            "headline": [
                {"compute": f"{p.compute:.3g}", "role": role(p.compute, budgets), "p": p}
                for p in quoted[0]
            ],
            "comparison": [
                {
                    "compute": f"{c:.3g}",
                    "role": role(c, budgets),
                    "rows": [(f.fitter, quoted[j][i]) for j, f in enumerate(outcome.fits)],
                }
                for i, c in enumerate(at)
            ],
            # Per-fit levels and conventions are shown only when the fits differ in them.
            "mixed": len(
                {
                    (f.conventions.params, f.conventions.flops, f.laws["n_opt"].level)
                    for f in outcome.fits
                }
            )
            > 1,
            "laws": [
                {
                    "fitter": f.fitter,
                    "a": _law_text(f, "n_opt"),
                    "b": _law_text(f, "d_opt"),
                    "loss": _law_text(f, "loss_opt"),
                    "r2": "" if f.laws["n_opt"].r2 is None else f"{f.laws['n_opt'].r2:.4f}",
                    "budgets": len(f.optima)
                    if f.diagnostics.get("n_budgets") != 0
                    else f"none ({len(f.optima)} C)",
                    "level": f"{f.laws['n_opt'].level:.0%}",
                    "conventions": f"{f.conventions.params.replace('_', '-')} N, "
                    f"{flops_convention(f.conventions.flops)}",
                    "warnings": len(f.warnings),
                    "report": f.report(),
                }
                for f in outcome.fits
            ],
            "runs": _runs_summary(outcome, observations),
            "run_rows": _run_rows(outcome, observations),
            "warnings": _warnings(outcome),
            "figures": self.figures(outcome),
            "config": _config_text(outcome),
            "environment": environment(),
            "fmt": format_estimate,
        }

    def render(self, outcome: StudyOutcome) -> str:
        """The page of an outcome."""
        return self.page(self.context(outcome))

    def page(self, context: dict[str, Any]) -> str:
        """The page of a `context` (what `context(outcome)` gathered)."""
        from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

        env = Environment(
            loader=PackageLoader("flops_fit_plotters", "templates"),
            autoescape=select_autoescape(("html", "j2")),
            undefined=StrictUndefined,  # a template typo fails the tests, not the reader
            trim_blocks=True,
            lstrip_blocks=True,
        )
        return env.get_template("report.html.j2").render(**context)
