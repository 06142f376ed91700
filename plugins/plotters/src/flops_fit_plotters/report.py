"""The `report` plotter: one self-contained HTML page with the study's answer and its evidence.

A scaling study ends in a meeting where someone asks "how sure are we?". The page answers in
the order people ask: the headline (N*, D*, L* and D*/N* with intervals at the largest budget
and at each target), the fits side by side (every fitter the study ran, with its intervals),
the figures, every warning, the runs, the resolved config and the environment (with every
plugin's distribution). The figures are this package's and those of every other plotter the
study's `[plot] names` lists, a third party's too, each built through the plugin host; they are
embedded as data URIs (SVG, or PNG where a third party writes only that), so the file can be
mailed or attached to a ticket and still show everything; nothing is fetched from the network.
Rendering is deterministic (no timestamps), so a rerun of an unchanged study rewrites the same
bytes.
"""

from __future__ import annotations

import base64
import json
import platform
import re
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import tomli_w

from flops_fit_core import (
    DEFAULT_PLOTS,
    REPORT_FILE,
    NothingToDraw,
    Observations,
    Plotter,
    StudyOutcome,
    computes,
    flops_convention,
    format_estimate,
    format_law,
    get_host,
    predictions,
    role,
    write_atomic,
)

from .base import FigureConfig, FigurePlotter
from .envelope import frontiers
from .style import budget_label, figure_bytes

__all__ = ["ReportPlotter"]

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
    "envelope": (
        "Approach 1: every run's loss against compute (grey), and the points each method "
        "reads off their lower envelope as the compute-optimal frontier (chinchilla: the best "
        "run at each C of the smoothed, interpolated curves; pareto: the checkpoints nothing "
        "beats at less compute; hull: those on the lower convex hull). Where the methods' N* "
        "exponents differ, the curves do not settle the answer."
    ),
    "rounds": (
        "How a study planned in rounds spent its compute: each run coloured by the round that "
        "added it, over the fitted N*(C); and the width of the target interval after each "
        "round against the compute trained so far."
    ),
}


def environment() -> dict[str, str]:
    """Python, platform, the versions of the packages a study's numbers depend on, and the
    distribution and version of every plugin the host has registered (a third party's too)."""
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
    listed = {_canonical(name) for name in env}
    plugins = {r.distribution: r.version for r in get_host().records()}
    for dist, dist_version in sorted(plugins.items()):
        if _canonical(dist) not in listed:
            env[dist] = dist_version
            listed.add(_canonical(dist))
    return env


def _canonical(name: str) -> str:
    """A distribution's name as packaging compares it (`Flops_Fit.x` is `flops-fit-x`)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class _Figure:
    name: str
    caption: str
    data_uri: str | None = None
    skipped: str | None = None


#: The files a figure may be embedded from, by suffix: their media types.
_MEDIA_TYPES = {".svg": "image/svg+xml", ".png": "image/png"}


def _data_uri(data: bytes, suffix: str = ".svg") -> str:
    media = _MEDIA_TYPES[suffix.lower()]
    return f"data:{media};base64," + base64.b64encode(data).decode("ascii")


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else repr(exc)


def _plot_section(outcome: StudyOutcome) -> dict[str, Any] | None:
    """The study's `[plot]` table, when the outcome carries its config."""
    section = (outcome.config or {}).get("plot")
    return section if isinstance(section, dict) else None


def _figure_names(outcome: StudyOutcome) -> list[str]:
    """The plotters whose figures the page shows, in order: the default figures (this
    package's, which the page always tries: each says why when it cannot be drawn), then every
    other plotter the study's `[plot] names` lists."""
    names = (_plot_section(outcome) or {}).get("names")
    if not (isinstance(names, list | tuple) and all(isinstance(n, str) for n in names)):
        names = ()
    # A study planned in rounds shows them, whatever its figures: how it spent its compute.
    rounds = ("rounds",) if outcome.plan is not None and len(outcome.plan.rounds) > 1 else ()
    # A study that read the envelope of its curves shows it, beside the other approaches.
    envelope = ("envelope",) if any(frontiers(f) for f in outcome.fits) else ()
    return list(dict.fromkeys([*DEFAULT_PLOTS, *rounds, *envelope, *names]))


def _embed_files(name: str, plotter: Plotter, outcome: StudyOutcome) -> list[_Figure]:
    """A plotter that is not one of our figures: its `draw` into a scratch directory, and each
    SVG or PNG file it returns embedded (the SVG, where it writes both of one figure)."""
    with tempfile.TemporaryDirectory(prefix="flops-fit-report-") as scratch:
        paths = [Path(p) for p in plotter.draw(outcome, Path(scratch)) or ()]
        chosen: dict[str, Path] = {}
        for path in paths:
            suffix = path.suffix.lower()
            if suffix in _MEDIA_TYPES and (path.stem not in chosen or suffix == ".svg"):
                chosen[path.stem] = path
        if not chosen:
            wrote = ", ".join(p.name for p in paths) or "nothing"
            return [_Figure(name, name, skipped=f"wrote no SVG or PNG file to embed ({wrote})")]
        return [
            _Figure(
                name if stem == name or len(chosen) == 1 else f"{name}-{stem}",
                name if len(chosen) == 1 else f"{name}: {path.name}",
                data_uri=_data_uri(path.read_bytes(), path.suffix),
            )
            for stem, path in chosen.items()
        ]


def _rounds(outcome: StudyOutcome) -> dict[str, Any] | None:
    """The rounds of a study planned in rounds (what each added, why, the width it was planned
    from) and why it stopped; None for a one-round plan."""
    plan = outcome.plan
    if plan is None or not plan.rounds:
        return None

    def number(value: float | None) -> str:
        return "" if value is None else f"{value:.3g}"

    rows = [
        {
            "index": r.index,
            "added": len(r.experiments),
            "compute": number(r.compute),
            "width": number(r.width),
            "expected": number(r.predicted_width),
            "note": r.note,
        }
        for r in plan.rounds
    ]
    stop = plan.stop
    return {
        "rows": rows,
        "stop": None if stop is None else stop.note,
        "reached": stop is not None and stop.reached,
    }


def _runs_summary(outcome: StudyOutcome, observations: Observations) -> dict[str, Any]:
    budgets = observations.budgets if observations.has_budgets else observations.compute
    devices = Counter(r.device or "unknown" for r in outcome.runs)
    trainers = Counter(f"{r.trainer.name} {r.trainer.version}" for r in outcome.runs)
    failed = [r for r in outcome.runs if r.status == "failed"]
    return {
        "n_ok": len(observations),
        "n_budgets": len(budgets) if observations.has_budgets else 0,
        "budget_range": (budget_label(budgets.min()), budget_label(budgets.max())),
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
                "budget": budget_label(r.spec.budget, 2),
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
            "budget": "" if budget is None else budget_label(budget[i], 2),
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
            f"budget {budget_label(o.budget)}: {', '.join(o.flags)}" for o in fit.optima if o.flags
        ]
        groups.append((f"{fit.fitter} fit", [*fit.warnings, *flagged]))
    run_warnings = Counter(w for r in outcome.runs for w in r.warnings)
    groups.append(
        ("runs", [w if n == 1 else f"{w} ({n} runs)" for w, n in sorted(run_warnings.items())])
    )
    failed = [f"{r.experiment_id}: {r.error}" for r in outcome.runs if r.status == "failed"]
    groups.append(("failed runs", failed))
    return [(where, list(dict.fromkeys(msgs))) for where, msgs in groups if msgs]


def _budgets_cell(fit) -> str | int:
    """What a fit's laws ran over: its budgets, the C of its optima, or a frontier's runs."""
    if frontiers(fit) is not None:
        runs = len(fit.diagnostics.get("frontier_runs", ()))
        return f"none (frontier of {runs} runs)"
    if fit.diagnostics.get("n_budgets") != 0:
        return len(fit.optima)
    return f"none ({len(fit.optima)} C)"


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
        """Each figure of the outcome as a data URI, or the reason it was left out.

        Every plotter of `_figure_names` is built through the plugin host from its name and
        the study's `[plot]` options; one that cannot be built or drawn costs the reader that
        figure, never the page. A figure of ours that the study's plotters have just written
        as SVG for this outcome (with the same `[plot]` options) is embedded from its file
        rather than drawn a second time; a third party's plotter draws into a scratch
        directory and the page embeds the SVG or PNG files it returns.
        """
        host = get_host()
        options = self._plot_options(outcome)
        written = {Path(p).name: Path(p) for p in outcome.drawn}
        out: list[_Figure] = []
        for name in _figure_names(outcome):
            if name == self.name:
                continue
            caption = _CAPTIONS.get(name, name)
            try:
                cls = host.get("plotter", name)
                if issubclass(cls, ReportPlotter):
                    continue  # a page is not a figure of itself
                if not issubclass(cls, FigurePlotter):
                    out.extend(_embed_files(name, host.create("plotter", name, options), outcome))
                    continue
                if f"{name}.svg" in written:
                    svg = written[f"{name}.svg"].read_bytes()
                    out.append(_Figure(name, caption, data_uri=_data_uri(svg)))
                    continue
                own = {k: v for k, v in options.items() if k in cls.Config.model_fields}
                svg_only = {"targets": self.config.targets, "dpi": self.config.dpi}
                plotter = host.create("plotter", name, {**own, **svg_only, "formats": ("svg",)})
                svg = figure_bytes(plotter.figure_for(outcome), "svg", self.config.dpi)
            except NothingToDraw as exc:
                out.append(_Figure(name, caption, skipped=str(exc)))
                continue
            except Exception as exc:  # one figure never costs the reader the whole page
                reason = f"could not be drawn: {_first_line(exc)}"
                out.append(_Figure(name, caption, skipped=reason))
                continue
            out.append(_Figure(name, caption, data_uri=_data_uri(svg)))
        return out

    def _plot_options(self, outcome: StudyOutcome) -> dict[str, Any]:
        """The `[plot]` options the study built its plotters from (all get the same ones):
        the config's, or, for an outcome without one, those this report was given."""
        section = _plot_section(outcome)
        if section is None:
            return self.config.model_dump(exclude_unset=True)
        return {k: v for k, v in section.items() if k != "names"}

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
                    "a": format_law(f.laws["n_opt"]),
                    "b": format_law(f.laws["d_opt"]),
                    "loss": format_law(f.laws["loss_opt"]),
                    "r2": "" if f.laws["n_opt"].r2 is None else f"{f.laws['n_opt'].r2:.4f}",
                    "budgets": _budgets_cell(f),
                    "level": f"{f.laws['n_opt'].level:.0%}",
                    "conventions": f"{f.conventions.params.replace('_', '-')} N, "
                    f"{flops_convention(f.conventions.flops)}",
                    "warnings": len(f.warnings),
                    "report": f.report(),
                }
                for f in outcome.fits
            ],
            "rounds": _rounds(outcome),
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
