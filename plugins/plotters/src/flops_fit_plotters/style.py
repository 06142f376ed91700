"""One look for every flops-fit figure, applied without touching global matplotlib state.

Plotters run in the same process as each other and as the user's own code (a notebook, a
pipeline), so nothing here imports pyplot, selects a backend or edits `rcParams`: every figure
is a bare `matplotlib.figure.Figure`, and fonts and colours are set on the artists themselves.
The palette is Okabe & Ito's, which stays distinguishable under the common colour-vision
deficiencies, and the save helper makes reruns byte-identical so a rerun stage can tell whether
a figure really changed.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

from flops_fit_core import write_atomic

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn: it costs ~1 s at start-up
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["NEUTRAL", "budget_label", "budget_labels", "series_style"]

#: Okabe & Ito (2008), "Color Universal Design": eight colours told apart by most readers,
#: including those with protanopia, deuteranopia and tritanopia.
OKABE_ITO: dict[str, str] = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}

#: The order series take their colours in, strongest contrasts first. Yellow is left out: it
#: nearly vanishes on white, and a ninth budget is better told apart by its marker (see
#: `series_style`) than by a colour nobody can see.
SERIES_COLOURS: tuple[str, ...] = tuple(
    OKABE_ITO[k]
    for k in (
        "blue",
        "orange",
        "bluish_green",
        "vermillion",
        "reddish_purple",
        "sky_blue",
        "black",
    )
)

#: Colour for things that belong to no series (fitted laws' companions, unmatched points).
NEUTRAL = "#555555"
GRID_COLOUR = "#d9d9d9"
LEGEND_EDGE = "#bbbbbb"

#: Point markers; a series beyond the seventh reuses a colour, so it changes marker as well and
#: two series never look alike.
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "<", ">")

#: Font sizes in points, set per artist (never through rcParams).
FONT_SIZES: dict[str, float] = {"title": 12.0, "label": 10.5, "tick": 9.0, "legend": 9.0}

#: How far past the largest budget the laws are drawn (in decades) unless a target is further:
#: the range users ask about.
EXTRAPOLATE_DECADES = 1.0

#: Formats `save_figure` can write deterministically.
SUPPORTED_FORMATS: tuple[str, ...] = ("png", "svg", "pdf")


def flops_kind(flops: str) -> str:
    """How an axis names the FLOP convention: `6ND` or `exact count`."""
    return "6ND" if flops == "6n" else "exact count"


def series_style(index: int) -> tuple[str, str]:
    """(colour, marker) of the `index`-th series: colours cycle first, then markers change."""
    n = len(SERIES_COLOURS)
    return SERIES_COLOURS[index % n], MARKERS[(index // n) % len(MARKERS)]


def new_figure(width: float, height: float) -> Figure:
    """A white figure with constrained layout, detached from pyplot (no global registry).

    Constrained layout keeps labels, titles and legends placed outside the axes from being
    clipped or overlapping without per-figure hand tuning.
    """
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained", facecolor="white")


def style_axes(ax: Axes) -> None:
    """Light grid behind the data and readable tick labels, set on this axes only."""
    ax.set_axisbelow(True)
    ax.grid(True, which="major", color=GRID_COLOUR, linewidth=0.7)
    ax.grid(True, which="minor", color=GRID_COLOUR, linewidth=0.35, alpha=0.6)
    ax.tick_params(which="both", labelsize=FONT_SIZES["tick"])
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def legend_outside(ax: Axes, handles: list, title: str | None = None) -> None:
    """The legend right of the axes, top-aligned and frameless: for figures whose data fill
    every corner (valleys, fanning bands), where an inside legend would cover some of it."""
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        borderaxespad=0.0,
        frameon=False,
        fontsize=FONT_SIZES["legend"],
        title=title,
        title_fontsize=FONT_SIZES["legend"] + 0.5,
    )


def budget_label(compute: float, digits: int = 1) -> str:
    """A compute budget as a figure or table labels it, `1.0e18`: short, unambiguous, and
    sortable by eye."""
    mantissa, exponent = f"{compute:.{digits}e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def budget_labels(budgets: Sequence[float]) -> list[str]:
    """`budget_label` for each, with just enough digits that distinct budgets read distinct."""
    values = [float(b) for b in budgets]
    distinct = len(set(values))
    for digits in range(1, 16):
        labels = [budget_label(b, digits) for b in values]
        if len(set(labels)) == distinct:
            return labels
    return [repr(b) for b in values]


def _software() -> str:
    try:
        ours = version("flops-fit-plotters")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        ours = "unknown"
    import matplotlib

    return f"flops-fit-plotters {ours} (matplotlib {matplotlib.__version__})"


def _metadata(fmt: str) -> dict[str, str | None]:
    """Metadata without timestamps, so the same figure gives the same bytes on every run."""
    if fmt == "png":
        return {"Software": _software()}
    if fmt == "svg":
        return {"Date": None, "Creator": _software()}
    if fmt == "pdf":
        return {"CreationDate": None, "ModDate": None, "Creator": _software()}
    raise ValueError(f"unsupported figure format {fmt!r} (supported: {SUPPORTED_FORMATS})")


# Ids matplotlib's SVG backend derives from a random salt unless rcParams["svg.hashsalt"] is
# set, which we may not touch: clip paths (p), markers (m), hatches (h), collection paths, and
# embedded raster images (a colour bar's gradient).
_SVG_RANDOM_ID = re.compile(r'id="((?:[phm]|image|C[0-9a-f]+_[0-9a-f]+_)[0-9a-f]{10})"')


def _stable_svg_ids(svg: str) -> str:
    """Rename the SVG's salted-hash ids to counters in order of appearance.

    The document is otherwise a pure function of the figure, so this makes it deterministic
    without `rcParams["svg.hashsalt"]`.
    """
    mapping: dict[str, str] = {}
    for match in _SVG_RANDOM_ID.finditer(svg):
        old = match.group(1)
        if old not in mapping:
            mapping[old] = f"{old[:-10]}ff{len(mapping):06d}"
    if not mapping:
        return svg
    token = re.compile(
        r"(?<![0-9A-Za-z_])(" + "|".join(map(re.escape, mapping)) + r")(?![0-9A-Za-z_])"
    )
    return token.sub(lambda m: mapping[m.group(1)], svg)


def figure_bytes(fig: Figure, fmt: str, dpi: int) -> bytes:
    """The figure rendered to `fmt` in memory, deterministically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi, metadata=_metadata(fmt), facecolor="white")
    data = buffer.getvalue()
    if fmt == "svg":
        data = _stable_svg_ids(data.decode("utf-8")).encode("utf-8")
    return data


def save_figure(
    fig: Figure, out_dir: Path | str, name: str, formats: Iterable[str], dpi: int
) -> list[Path]:
    """Write `fig` as `<out_dir>/<name>.<fmt>` for each format; return the paths written.

    SVG is rendered first, so `<name>.svg` has the same bytes whatever other formats are
    asked for (and as the report's own drawing of the figure). The layout it settled is then
    kept for the other formats: running the constrained layout again costs about half of a
    render, and after a raster render it would move by a hair.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    formats = list(formats)
    for index, fmt in enumerate(sorted(formats, key=lambda f: f != "svg")):
        write_atomic(out / f"{name}.{fmt}", figure_bytes(fig, fmt, dpi))
        if index == 0:
            fig.set_layout_engine("none")
    return [out / f"{name}.{fmt}" for fmt in formats]
