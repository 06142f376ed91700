"""The report shows a third party's figure like one of ours: built through the plugin host from
the study's `[plot] names`, drawn into a scratch directory, embedded as a data URI; its
distribution is listed in the environment; one that cannot be built or has nothing to draw
costs the page that figure, never the page."""

from __future__ import annotations

import base64
import contextlib
import io
import re
import struct
import zlib
from pathlib import Path

import pytest

from flops_fit_core import (
    NothingToDraw,
    Plotter,
    PlotterConfig,
    PluginHost,
    StudyOutcome,
    get_host,
    hookimpl,
)
from flops_fit_core.plugins import reset_host
from flops_fit_plotters import ReportPlotter


def tiny_png(rgb: tuple[int, int, int] = (0, 114, 178)) -> bytes:
    """A valid 2x2 PNG of one colour, written without any imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + bytes(rgb) * 2 for _ in range(2))
    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PNG = tiny_png()
SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>'


class ThirdPartyConfig(PlotterConfig):
    """Accepts the shared `[plot]` options (formats, dpi, targets) plus one of its own."""

    colour: str = "blue"


class ThirdPartyPlotter(Plotter):
    """A plotter as someone else would ship it: no matplotlib, no FigurePlotter."""

    name = "thirdparty"
    Config = ThirdPartyConfig

    def plot(self, observations, fit, out_dir: Path) -> list[Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{self.name}.png"
        path.write_bytes(PNG)
        return [path]


class BothFormatsPlotter(Plotter):
    """Writes one figure twice (PNG and SVG) and a PDF the page cannot embed."""

    name = "bothformats"

    def plot(self, observations, fit, out_dir: Path) -> list[Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for suffix, data in ((".png", PNG), (".svg", SVG), (".pdf", b"%PDF-1.4")):
            (out / f"{self.name}{suffix}").write_bytes(data)
        return [out / f"{self.name}{s}" for s in (".png", ".svg", ".pdf")]


class EmptyPlotter(Plotter):
    name = "emptyparty"

    def plot(self, observations, fit, out_dir: Path) -> list[Path]:
        raise NothingToDraw("this study has no widgets to draw")


class ThirdPartyPlugin:
    """What a third party's entry point would load: an object with the register hook."""

    @hookimpl
    def flops_fit_register_plotters(self):
        return [ThirdPartyPlotter, BothFormatsPlotter, EmptyPlotter]


@contextlib.contextmanager
def installed(host: PluginHost):
    """`host` as the process-wide plugin host, the previous one restored afterwards."""
    host.register(
        ThirdPartyPlugin(), name="thirdparty", distribution="thirdparty-dist", version="1.2.3"
    )
    previous = get_host()
    reset_host(host)
    try:
        yield host
    finally:
        reset_host(previous)


def embedded(html: str) -> dict[str, tuple[str, bytes]]:
    """data-figure name -> (media type, bytes) of every embedded figure."""
    found = re.findall(
        r'<img src="data:(image/[a-z+]+);base64,([A-Za-z0-9+/=]+)"[^>]*data-figure="([^"]+)"',
        html,
    )
    return {name: (media, base64.b64decode(data)) for media, data, name in found}


def test_a_third_party_figure_and_its_distribution_reach_the_study_s_report(tmp_path):
    """A real mock study that names the third party's plotter in `[plot] names`."""
    from flops_fit_core.cli import main

    config = tmp_path / "study.toml"
    config.write_text('[plot]\nnames = ["isoflop", "thirdparty", "report"]\n')
    out = tmp_path / "run"
    args = ["run", "--preset", "mock", "-c", str(config), "--out", str(out)]
    with installed(PluginHost(load_entry_points=True)), contextlib.redirect_stdout(io.StringIO()):
        assert main(args) == 0
    assert (out / "figures" / "thirdparty.png").read_bytes() == PNG  # the study drew it too
    html = (out / "report.html").read_text()
    figures = embedded(html)
    assert figures["thirdparty"] == ("image/png", PNG)
    assert "<figcaption>thirdparty</figcaption>" in html
    assert {"isoflop", "scaling", "frontier"} <= set(figures)  # ours, as before
    assert "<tr><th>thirdparty-dist</th><td>1.2.3</td></tr>" in html
    assert re.search(r"<tr><th>flops-fit-plotters</th><td>[^<]+</td></tr>", html)


@pytest.fixture
def bare_host():
    """A host with only the third party's plugin: our figures are unknown names here, which
    the page must survive as well (and they cost no drawing time)."""
    with installed(PluginHost(load_entry_points=False)) as host:
        yield host


def outcome_naming(observations, fit, **plot) -> StudyOutcome:
    single = StudyOutcome.single(observations, fit)
    return StudyOutcome(fits=single.fits, observations=single.observations, config={"plot": plot})


def test_each_file_is_embedded_once_and_nothing_to_draw_is_a_skip(bare_host, observations, fit):
    names = ["thirdparty", "bothformats", "emptyparty", "report"]
    outcome = outcome_naming(observations, fit, names=names)
    figures = {f.name: f for f in ReportPlotter().figures(outcome)}
    assert figures["thirdparty"].data_uri.startswith("data:image/png;base64,")
    both = figures["bothformats"]  # the SVG of the two, the PDF left out
    assert both.data_uri == "data:image/svg+xml;base64," + base64.b64encode(SVG).decode()
    assert figures["emptyparty"].data_uri is None
    assert figures["emptyparty"].skipped == "this study has no widgets to draw"
    assert "report" not in figures  # never a page inside the page
    assert figures["isoflop"].skipped.startswith("could not be drawn: Unknown plotter 'isoflop'")


def test_an_option_the_third_party_does_not_know_costs_only_its_figure(
    bare_host, observations, fit
):
    outcome = outcome_naming(observations, fit, names=["thirdparty", "emptyparty"], shade=0.5)
    report = ReportPlotter()
    figures = {f.name: f for f in report.figures(outcome)}
    assert figures["thirdparty"].data_uri is None
    assert "could not be drawn" in figures["thirdparty"].skipped
    assert "shade" in figures["thirdparty"].skipped
    html = report.render(outcome)
    assert "<strong>thirdparty</strong>: could not be drawn" in html
    assert "<tr><th>thirdparty-dist</th><td>1.2.3</td></tr>" in html
