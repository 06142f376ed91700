"""What every plotter owes the pipeline: files, formats, dpi, determinism, config checks, and
no global matplotlib state."""

from __future__ import annotations

import ast
import re
from importlib.metadata import entry_points
from pathlib import Path

import matplotlib
import pytest
from PIL import Image

import flops_fit_plotters
from flops_fit_core import ConfigError, Plotter, PlotterConfig, format_number_tex
from flops_fit_plotters import FigureConfig, FrontierPlotter, IsoFlopPlotter, ScalingPlotter
from flops_fit_plotters.style import budget_label as format_budget
from flops_fit_plotters.style import budget_labels as format_budgets

#: The figures the shared fixtures (an empirical fit: no parametric law, no run model, no
#: curves) can draw; the others are checked the same way through the plotter contract.
PLOTTERS = (IsoFlopPlotter, ScalingPlotter, FrontierPlotter)
MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "svg": b"<?xml", "pdf": b"%PDF"}
SOURCE = Path(flops_fit_plotters.__file__).parent


@pytest.mark.parametrize("cls", PLOTTERS, ids=lambda c: c.name)
def test_plot_writes_each_configured_format_at_the_configured_dpi(cls, observations, fit, tmp_path):
    out = tmp_path / "figures" / "nested"  # created on demand
    plotter = cls({"formats": ["svg", "png", "pdf"], "dpi": 48})
    paths = plotter.plot(observations, fit, out)
    assert paths == [out / f"{cls.name}.{fmt}" for fmt in ("svg", "png", "pdf")]
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(MAGIC[path.suffix[1:]]) and len(data) > 1000
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths), "no temp files"
    width_in, height_in = plotter.figure(observations, fit).get_size_inches()
    with Image.open(paths[1]) as image:
        assert image.info["dpi"] == pytest.approx((48, 48), abs=0.01)
        expected = (width_in * 48, height_in * 48)  # Agg truncates to whole pixels
        assert all(abs(got - want) < 1 for got, want in zip(image.size, expected, strict=True))


def test_reruns_give_identical_files_and_leave_rcparams_alone(observations, fit, tmp_path):
    before = matplotlib.rcParams.copy()
    runs = []
    for run in ("a", "b"):
        files = {}
        for cls in PLOTTERS:
            for path in cls({"dpi": 30}).plot(observations, fit, tmp_path / run):
                files[path.name] = path.read_bytes()
        runs.append(files)
    assert sorted(runs[0]) == sorted(f"{c.name}.{fmt}" for c in PLOTTERS for fmt in ("png", "svg"))
    for name, data in runs[0].items():
        assert runs[1][name] == data, f"{name} differs between two identical runs"
    assert matplotlib.rcParams.copy() == before
    svg = runs[0]["scaling.svg"].decode()
    assert "<dc:date>" not in svg
    # Renamed clip-path ids still resolve: every url(#id) points at an element that exists.
    ids = set(re.findall(r'id="([^"]+)"', svg))
    refs = set(re.findall(r"url\(#([^)]+)\)", svg)) | set(re.findall(r'href="#([^"]+)"', svg))
    assert refs and refs <= ids


def test_no_pyplot_no_backend_switch_no_rcparams_writes_in_the_source():
    """Static guard: global state is never touched, whatever the test process imported."""
    offences = []
    for path in SOURCE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = {a.name for a in node.names}
                if "pyplot" in node.module or "pyplot" in names:
                    offences.append(f"{path.name}: imports pyplot")
            elif isinstance(node, ast.Import):
                offences += [
                    f"{path.name}: imports pyplot" for a in node.names if "pyplot" in a.name
                ]
            elif (
                isinstance(node, ast.Attribute)
                and node.attr in {"use", "rcParams", "rc", "rc_context", "rcdefaults", "style"}
                and isinstance(node.value, ast.Name)
                and node.value.id in {"matplotlib", "mpl"}
            ):
                offences.append(f"{path.name}: matplotlib.{node.attr}")
    assert not offences


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"colour": "red"}, "unknown key 'colour'"),
        ({"formats": ["png", "gif"]}, "unsupported format"),
        ({"formats": []}, "at least one format"),
        ({"dpi": 0}, "dpi must be between"),
    ],
)
@pytest.mark.parametrize("cls", PLOTTERS, ids=lambda c: c.name)
def test_bad_config_is_a_config_error(cls, config, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        cls(config)


def test_config_is_normalised_and_accepts_the_shared_plot_section():
    plotter = IsoFlopPlotter({"formats": [".PNG", "svg", "png"], "dpi": 200})
    assert plotter.config.formats == ("png", "svg")
    assert ScalingPlotter({"formats": "pdf"}).config.formats == ("pdf",)
    shared = PlotterConfig(formats=("svg",), dpi=90)  # the core's [plot] model
    assert ScalingPlotter(shared).config == FigureConfig(formats=("svg",), dpi=90)
    assert IsoFlopPlotter().config == FigureConfig(formats=("png", "svg"), dpi=150)


def test_registered_through_the_entry_point_and_hook():
    (entry,) = [e for e in entry_points(group="flops_fit") if e.name == "plotters"]
    assert entry.load() is flops_fit_plotters
    classes = flops_fit_plotters.flops_fit_register_plotters()
    assert [c.name for c in classes] == [
        "isoflop",
        "scaling",
        "frontier",
        "parametric",
        "residuals",
        "curves",
        "envelope",
        "rounds",
        "report",
    ]
    for cls in classes:
        assert issubclass(cls, Plotter) and issubclass(cls.Config, PlotterConfig)
        assert cls.Config.model_config["extra"] == "forbid"


def test_budget_labels_are_short_and_never_collide():
    assert format_budget(1e18) == "1.0e18"
    assert format_budget(5.62e20) == "5.6e20"
    assert format_budgets([1e18, 1.04e18, 3e19]) == ["1.00e18", "1.04e18", "3.00e19"]
    assert format_budgets([2e18, 2e18]) == ["2.0e18", "2.0e18"]


def test_numbers_for_law_labels():
    assert format_number_tex(0.052) == "0.052"
    assert format_number_tex(123.456) == "123"
    assert format_number_tex(1102.3) == "1102"  # not `1.1e+03`
    assert format_number_tex(2.5e-6) == r"2.5\times10^{-6}"
    assert format_number_tex(3.0e7) == r"3\times10^{7}"
