"""Fuzz: study configs (TOML and YAML), `--set` and `--map` strings, through `config validate`,
`config show`, `plan`, `run --config` and `fit`.

Configs start from the `mock` preset and are edited anywhere (unknown keys, values of other
types, sections removed or replaced, deep nesting, a top that is not a table), then written as
TOML or YAML; raw YAML adds what only YAML has (tags such as `!!python/object`, aliases,
several documents). `--set` items are built from real keys and TOML-ish values, or are any text.
Each outcome keeps the promise and leaves the config file as it was; a config that validates is
also run (the mock trainer, serial, few experiments, no figures).
"""

from __future__ import annotations

import json
import tempfile
import tomllib
from pathlib import Path

import pytest
import tomli_w
import yaml
from hypothesis import given
from hypothesis import strategies as st

from flops_fit_core.config import read_preset
from tests.clirunner import NO_FIGURES, assert_one_line_error, flops_fit, snapshot
from tests.robustness.fuzz_support import (
    Broken,
    assert_promise,
    copy_study,
    mutate_json,
    printable_text,
)
from tests.robustness.profiles import fuzz_settings

pytestmark = pytest.mark.robustness

MOCK = read_preset("mock")

#: Texts only a YAML file can hold: tags that construct objects, aliases, several documents.
RAW_YAML = [
    'trainer: !!python/object/apply:os.system ["echo pwned"]\n',
    "trainer: !!python/name:os.system\n",
    "trainer: {name: mock, seed: !!python/int 3}\n",
    "trainer: {name: mock, device: !!binary aGVsbG8=}\n",
    "trainer: {name: mock, seed: 2001-12-14}\n",
    "plot: {names: [], targets: !!set {1e20}}\n",
    "planner: {name: isoflop, budgets: !!set {1e18, 1e19, 1e20}}\n",
    "fitter: {name: empirical, confidence: !!float .nan}\n",
    "fitter: {name: empirical, confidence: .inf}\n",
    "base: &b {name: mock}\ntrainer: *b\n",
    "trainer: &t {name: mock}\nfitter: *t\n",
    "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n"
    "e: &e [*d, *d, *d, *d, *d, *d, *d, *d]\ntrainer: {name: mock, x: [*e, *e, *e, *e]}\n",
    "trainer: {name: mock}\n---\ntrainer: {name: local}\n",
    "? [a, b]\n: 1\n",
    "1: {name: mock}\n",
    "trainer: {name: mock, 1: 2}\n",
    "trainer:\n  name: mock\n  name: local\n",
    "compare: {envelope: {bootstrap: 0}}\n",
    "compare: !!set {a}\n",
    "plot: {names: !!str 123}\n",
    "planner: {name: isoflop, n_budgets: 0x10}\n",
    "trainer: {name: mock, noise: 1_0}\n",
    "- trainer\n- fitter\n",
    "just text\n",
    "~\n",
    "",
    "\t: bad indent\n",
    "trainer: [" * 200 + "]" * 200 + "\n",
    "trainer: {name: mock, seed: " + "9" * 5000 + "}\n",
    "\ufefftrainer: {name: mock}\n",
]

#: Texts only a TOML file can hold, or that TOML parsers choke on.
RAW_TOML = [
    "[trainer]\nname = 'mock'\nseed = 1979-05-27T07:32:00Z\n",
    "[trainer]\nname = 'mock'\nnoise = inf\n",
    "[trainer]\nname = 'mock'\nnoise = nan\n",
    "[planner]\nname = 'isoflop'\nn_budgets = 99999999999999999999999999\n",
    "[trainer]\nname = 'mock'\n[trainer]\nseed = 1\n",
    "trainer = 'mock'\n",
    "[[trainer]]\nname = 'mock'\n",
    "[compare]\nname = 'envelope'\n",
    "[[compare]]\nname = 'envelope'\n[[compare]]\nname = 'envelope'\n",
    "[[compare]]\nname = 'empirical'\n",
    "[[compare]]\nbootstrap = 0\n",
    "[plot]\nnames = 'report'\n",
    "[plot]\nformats = ['png']\n",
    "schema_version = 2\n",
    "schema_version = '1'\n",
    "x = [" * 100 + "]" * 100 + "\n",
    "x = {a = " * 100 + "1" + "}" * 100 + "\n",
    "[trainer\nname =",
    "\x00",
    "[trainer]\nname = 'mock'\r\nseed = 2\r\n",
    "[a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z]\n",
    "['trainer']\n'name' = \"mo\\u0000ck\"\n",
    "[trainer]\nname = 'mock'\nseed = " + "9" * 5000 + "\n",
]


def _tomlable(value):
    """`value` with what TOML cannot write (null) left out, so most edits survive into TOML."""
    if isinstance(value, dict):
        return {str(k): _tomlable(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_tomlable(v) for v in value if v is not None]
    return value


@st.composite
def config_files(draw, suffixes=(".toml", ".toml", ".yaml", ".yml")) -> tuple[str, Broken]:
    """(file name, bytes) of a study config: the mock preset edited and written as TOML or
    YAML, or a raw text only one of them can hold."""
    kind = draw(st.sampled_from(["edited", "edited", "edited", "edited", "raw"]))
    suffix = draw(st.sampled_from(suffixes))
    if kind == "raw":
        if suffix == ".toml":
            text = draw(st.sampled_from(RAW_TOML) | printable_text(40))
        else:
            text = draw(st.sampled_from(RAW_YAML) | printable_text(40))
        return "study" + suffix, Broken(text.encode(), [f"raw: {text[:200]!r}"])
    base = draw(st.sampled_from([MOCK, {"trainer": {"name": "mock"}}, {}]))
    doc = draw(mutate_json(base)) if draw(st.integers(0, 4)) else base
    if suffix == ".toml":
        doc = _tomlable(doc)
        if not isinstance(doc, dict):  # TOML's top is a table: the same value under a key
            doc = {"trainer": doc}
        try:
            text = tomli_w.dumps(doc)
        except (TypeError, ValueError):  # what TOML cannot write: the preset as it is
            text = tomli_w.dumps(MOCK)
    if suffix != ".toml":
        style = draw(st.sampled_from([False, True, None]))
        text = yaml.safe_dump(doc, default_flow_style=style, allow_unicode=True)
    return "study" + suffix, Broken(text.encode(), [f"{suffix}: {json.dumps(doc)[:400]}"])


def _runnable(text: bytes, suffix: str) -> bool:
    """Whether `run` may take this config here: the mock trainer on the serial executor (no
    torch, no network, no worker processes), one-round planning."""
    try:
        doc = tomllib.loads(text.decode()) if suffix == ".toml" else yaml.safe_load(text)
    except Exception:  # what the CLI refuses anyway: nothing to run
        return False
    if not isinstance(doc, dict):
        return False

    def name(section, default):
        table = doc.get(section, {})
        return table.get("name", default) if isinstance(table, dict) else default

    return (
        name("trainer", "mock") == "mock"
        and name("executor", "serial") == "serial"
        and name("planner", "isoflop") == "isoflop"
    )


#: What keeps a run of any config small: few experiments, no waiting, no figures.
SMALL_RUN = [
    "--set",
    "planner.max_experiments=100",
    "--set",
    "trainer.seconds_per_run=0",
    "--set",
    "compare=[]",
    *NO_FIGURES,
]


@fuzz_settings(70)
@given(config=config_files())
def test_config_files(capsys, config):
    """`config validate`, `config show` and `plan -c FILE`, then `run -c FILE` when the config
    is valid and runnable here; the config file stays as it was."""
    name, data = config
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        path = folder / name
        path.write_bytes(data)
        before = snapshot(folder)
        valid = flops_fit(capsys, "-q", "config", "validate", "-c", path)
        assert_promise(valid, what="validate")
        assert_promise(flops_fit(capsys, "-q", "config", "show", "-c", path), what="show")
        plan = Path(tmp) / "out" / "plan.json"
        planned = flops_fit(capsys, "-q", "plan", "-c", path, "-o", plan)
        assert_promise(planned, what="plan")
        assert plan.exists() == (planned.code == 0)
        if valid.code == 0 and _runnable(data, path.suffix):
            run = Path(tmp) / "out" / "run"
            ran = flops_fit(capsys, "-q", "run", "-c", path, "--out", run, *SMALL_RUN)
            assert_promise(ran, what="run", said_before=True)
        assert snapshot(folder) == before


@fuzz_settings(30)
@given(
    config=config_files(suffixes=(".toml",)),
    command=st.sampled_from(["fit", "train", "run"]),
)
def test_a_run_directory_with_a_broken_config(capsys, mock_study, config, command):
    """A study's own config.toml, broken: `fit` and `train` read it as their config (the file
    beside their input); `run --preset mock` reads it for what it compared before. The
    results and the plan stay as they were, or gain records."""
    _, data = config
    if command == "run" and b"9" * 4301 in data:
        return  # rundir.read_run_config: see test_a_run_over_a_config_with_a_huge_integer
    with tempfile.TemporaryDirectory() as tmp:
        run = copy_study(mock_study, Path(tmp))
        (run / "config.toml").write_bytes(data)
        results, plan = (run / "results.jsonl").read_bytes(), (run / "plan.json").read_bytes()
        if command == "fit":
            args = ["fit", run / "results.jsonl", "-o", Path(tmp) / "fit.json"]
        elif command == "train":
            args = ["train", run / "plan.json", "--set", "trainer.seconds_per_run=0"]
        else:
            args = ["run", "--preset", "mock", "--out", run, *SMALL_RUN]
        outcome = flops_fit(capsys, "-q", *args)
        assert_promise(outcome, what=command, said_before=command != "fit")
        assert (run / "results.jsonl").read_bytes().startswith(results)
        if command != "run":
            assert (run / "plan.json").read_bytes() == plan
            assert (run / "config.toml").read_bytes() == data


def test_a_run_over_a_config_with_a_huge_integer(capsys, mock_study, tmp_path):
    run = copy_study(mock_study, tmp_path)
    (run / "config.toml").write_text("[trainer]\nname = 'mock'\nseed = " + "9" * 5000 + "\n")
    outcome = flops_fit(capsys, "-q", "run", "--preset", "mock", "--out", run, *SMALL_RUN)
    assert_promise(outcome)


#: Keys a `--set` may name: real ones of every section, and ones that are not.
SET_KEYS = [
    "trainer.seed",
    "trainer.noise",
    "trainer.name",
    "trainer.curve_points",
    "planner.n_budgets",
    "planner.budgets",
    "planner.min_flops",
    "planner.conventions.flops",
    "planner.conventions",
    "planner.hardware.cpu",
    "fitter.name",
    "fitter.confidence",
    "fitter.bootstrap",
    "fitter.flops",
    "executor.name",
    "executor.workers",
    "plot.names",
    "plot.formats",
    "plot.targets",
    "plot.dpi",
    "compare",
    "compare.envelope.bootstrap",
    "compare.robust.bootstrap",
    "compare.0.name",
    "schema_version",
    "trainer",
    "plot",
    "trainer.seed.deeper",
    "bogus.key",
    "",
    ".",
    "a..b",
    " trainer . seed ",
    "trainer.",
    ".seed",
    "träiner.seed",
    "trainer.seed\n",
]

#: Values a `--set` may carry, read as TOML (or kept as text).
SET_VALUES = [
    "",
    "1",
    "-1",
    "0",
    "3.5",
    "1e400",
    "-1e400",
    "nan",
    "inf",
    "true",
    "'x'",
    '"x"',
    '"unterminated',
    "[1, 2",
    "[]",
    '[1, "a", [2]]',
    "[1e18, 1e19, 1e20]",
    '["png", "svg"]',
    "{a = 1}",
    "{name = 'robust', bootstrap = 0}",
    "[{name = 'robust'}]",
    "{",
    "1979-05-27",
    "0x10",
    "1_000",
    "9" * 5000,
    "[" * 70 + "]" * 70,
    "{a = " * 70 + "1" + "}" * 70,
    "empirical",
    "robust",
    "local",
    "mock",
    "a=b",
    "x\ny",
]


def _set_items():
    structured = st.builds(
        "{}={}".format,
        st.sampled_from(SET_KEYS),
        st.sampled_from(SET_VALUES) | printable_text(10),
    )
    return st.lists(structured | printable_text(20), min_size=1, max_size=3)


@fuzz_settings(70)
@given(
    items=_set_items(),
    preset=st.sampled_from([["--preset", "mock"], ["--preset", "mock-adaptive"], []]),
)
def test_set_items(capsys, items, preset):
    """`--set` items through `config validate`, `config show` and `plan`: each is applied, or
    refused by one line naming it."""
    sets = [arg for item in items for arg in ("--set", item)]
    for command in (["config", "validate"], ["config", "show"]):
        outcome = flops_fit(capsys, "-q", *command, *preset, *sets)
        assert_promise(outcome, what=command[1])
    with tempfile.TemporaryDirectory() as tmp:
        plan = Path(tmp) / "plan.json"
        outcome = flops_fit(capsys, "-q", "plan", *preset, *sets, "-o", plan)
        assert_promise(outcome, what="plan")


def _plugin_options() -> list[tuple[str, str, str]]:
    """(kind, plugin, option) of every installed plugin's options, but those of plugins that
    reach out of this machine when validated (the api trainer, the ray and slurm executors)."""
    from flops_fit_core.options import describe_options
    from flops_fit_core.plugins import get_host

    remote = {("trainer", "api"), ("executor", "ray"), ("executor", "slurm")}
    return [
        (record.kind, record.name, option.name)
        for record in get_host().records()
        if (record.kind, record.name) not in remote
        for option in describe_options(record.cls.Config)
    ]


@fuzz_settings(60)
@given(
    option=st.sampled_from(_plugin_options()),
    value=st.sampled_from(SET_VALUES) | printable_text(10),
)
def test_every_option_of_every_plugin(capsys, option, value):
    """Each option of each installed plugin given a value of any type through `--set`
    (`config validate --preset mock`): accepted, or one line naming it."""
    kind, name, key = option
    if kind == "plotter":
        named = ["--set", f'plot.names=["{name}"]', "--set", f"plot.{key}={value}"]
    else:
        named = ["--set", f"{kind}.name={name}", "--set", f"{kind}.{key}={value}"]
    outcome = flops_fit(capsys, "-q", "config", "validate", "--preset", "mock", *named)
    assert_promise(outcome, what=kind)


@fuzz_settings(30)
@given(items=_set_items(), fitter=st.sampled_from(["empirical", "quadratic", "robust"]))
def test_set_items_of_a_fit(capsys, mock_study, items, fitter):
    """`fit RESULTS --set ...`: the fitter's options from any text, on a study's results."""
    sets = [arg for item in items for arg in ("--set", item)]
    with tempfile.TemporaryDirectory() as tmp:
        before = snapshot(mock_study)
        out = Path(tmp) / "fit.json"
        args = ["-q", "fit", mock_study / "results.jsonl", "--preset", "mock", "-o", out]
        quick = ["--set", "fitter.bootstrap=0"] if fitter == "robust" else []
        outcome = flops_fit(capsys, *args, "--fitter", fitter, *quick, *sets)
        assert_promise(outcome, what="fit")
        assert snapshot(mock_study) == before


@fuzz_settings(30)
@given(
    items=st.lists(
        st.builds(
            "{}{}{}".format,
            st.sampled_from(["params", "tokens", "compute", "loss", "budget", "run", "", "N"])
            | printable_text(8),
            st.sampled_from(["=", "=", "==", " = ", ""]),
            st.sampled_from(["parameters", "compute_budget", "final_loss", "", "x"])
            | printable_text(8),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_map_items(capsys, items):
    """`--map` items on the CS336 table: a mapping that names its columns fits; any other is
    refused by one line."""
    table = Path(__file__).resolve().parents[1] / "data/cs336/isoflops_curves.csv"
    maps = [arg for item in items for arg in ("--map", item)]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fit.json"
        outcome = flops_fit(capsys, "-q", "fit", table, "--fitter", "empirical", "-o", out, *maps)
        assert_promise(outcome, what="fit")


#: Command lines that read a config, a table or a fit but never train (no `run`, `train` or
#: `serve`: a stray token must not start a study). A group without its command (`flops-fit`,
#: `flops-fit config`) is left out: see `test_a_group_without_its_command`.
COMMANDS = [
    ["--version"],
    ["config", "show"],
    ["config", "validate", "--preset", "mock"],
    ["plugins"],
    ["predict", "{fit}"],
    ["predict", "{fit}", "--compute", "1e22"],
    ["fit", "{table}", "-o", "{out}/fit.json"],
    ["plan", "--preset", "mock", "-o", "{out}/plan.json"],
    ["plot", "{table}", "{fit}", "-o", "{out}/figs", "--plotter"],
    ["report", "{out}"],
]

#: Tokens a command line may gain: options of every command, in and out of place.
TOKENS = [
    "--set",
    "--map",
    "--preset",
    "--compute",
    "--target",
    "--group-tolerance",
    "--json",
    "--force",
    "-c",
    "-o",
    "-q",
    "-v",
    "-h",
    "--version",
    "--bogus",
    "--",
    "-",
    "=",
    "mock",
    "trainer.seed=1",
    "loss=final_loss",
    "1e22",
]


def _no_line_breaks(strategy):
    """Text without line breaks: click's own messages quote a stray token as it is, so one
    with a line break splits the `Error:` line (see `test_a_stray_token_with_a_line_break`)."""
    return strategy.map(lambda text: "".join(c for c in text if len(f"x{c}x".splitlines()) == 1))


@fuzz_settings(40)
@given(
    command=st.sampled_from(COMMANDS),
    tokens=st.lists(st.sampled_from(TOKENS) | _no_line_breaks(printable_text(12)), max_size=3),
    at=st.integers(0, 8),
)
def test_command_lines(capsys, monkeypatch, mock_study, command, tokens, at):
    """Any command line of the reading commands with stray tokens (options out of place, text
    with line breaks, unknown options): one line, never a traceback."""
    table = Path(__file__).resolve().parents[1] / "data/cs336/isoflops_curves.csv"
    with tempfile.TemporaryDirectory() as tmp:
        monkeypatch.chdir(tmp)  # a default output path lands here
        names = {"fit": mock_study / "fit.json", "table": table, "out": tmp}
        argv = [part.format(**names) for part in command]
        argv[min(at, len(argv)) : min(at, len(argv))] = tokens
        before = snapshot(mock_study)
        assert_promise(flops_fit(capsys, "-q", *argv), what=" ".join(command[:1]))
        assert snapshot(mock_study) == before


@pytest.mark.parametrize("argv", [[], ["config"]], ids=["flops-fit", "flops-fit config"])
def test_a_group_without_its_command(capsys, argv):
    """`flops-fit` or `flops-fit config` alone: the group's help, not a multi-line error."""
    assert_promise(flops_fit(capsys, *argv))


@pytest.mark.parametrize("token", ["\r", "a\nb", "--x\ny"])
def test_a_stray_token_with_a_line_break(capsys, token):
    """`flops-fit config show $'\\r'`: click's `Got unexpected extra argument (\\r)` (or `No
    such option: --x\\ny`) is printed with the line break in it, two lines."""
    assert_promise(flops_fit(capsys, "config", "show", "--preset", "mock", token))


# -- what the fuzzing found: each input, as a plain regression test ------------------------------

#: Seven levels of nine aliases: 4.8 million values in eight lines of YAML (a "billion laughs").
ALIAS_BOMB = (
    "a: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcde", "bcdef", strict=True)
    )
    + "trainer: {name: mock, x: [*f, *f, *f, *f, *f, *f, *f, *f, *f]}\n"
)


def test_a_yaml_alias_bomb_is_refused_before_it_is_walked(capsys, tmp_path):
    """Walking (depth check, merge, validation) the 4.8 million values eight lines stand for
    took seconds; one more level, a minute; two, hours."""
    path = tmp_path / "study.yaml"
    path.write_text(ALIAS_BOMB)
    for command in (["config", "validate"], ["config", "show"]):
        outcome = flops_fit(capsys, *command, "-c", path)
        assert_one_line_error(outcome, "holds more than 100,000 values")


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("big.toml", "[trainer]\nname = 'mock'\nseed = " + "9" * 5000 + "\n"),
        ("big.yaml", "trainer: {name: mock, seed: " + "9" * 5000 + "}\n"),
    ],
)
def test_an_integer_of_5000_digits_in_a_config_file(capsys, tmp_path, name, text):
    """Python refuses to convert an integer of more than 4,300 digits: an internal error."""
    path = tmp_path / name
    path.write_text(text)
    outcome = flops_fit(capsys, "config", "validate", "-c", path)
    assert_one_line_error(outcome, name, "an integer of more than 4,300 digits")


def test_an_integer_of_5000_digits_in_a_set(capsys):
    outcome = flops_fit(capsys, "config", "validate", "--set", "trainer.seed=" + "9" * 5000)
    assert_one_line_error(outcome, "--set trainer.seed", "more than 4,300 digits")


def test_plot_options_are_checked_when_no_plotter_is_named(capsys):
    """With `plot.names = []` nothing consumed the other [plot] keys: a typo passed silently."""
    outcome = flops_fit(
        capsys, "config", "validate", "--preset", "mock", *NO_FIGURES, "--set", "plot.fromats=1"
    )
    assert_one_line_error(outcome, "config [plot]: unknown key 'fromats'")


def test_plot_formats_that_are_not_a_list(capsys):
    """`--set plot.formats=1`: the plotters' format check iterated the 1 (`TypeError: 'int'
    object is not iterable`, an internal error)."""
    outcome = flops_fit(capsys, "config", "validate", "--preset", "mock", "--set", "plot.formats=1")
    assert_one_line_error(outcome, "formats: a list of file formats such as")


def test_an_empty_key_is_named_as_such(capsys, tmp_path):
    """An empty key read as `unknown key '(top level)'`."""
    path = tmp_path / "study.yaml"
    path.write_text('"": 1\n')
    assert_one_line_error(flops_fit(capsys, "config", "validate", "-c", path), "unknown key ''")


@pytest.mark.parametrize(
    ("sets", "needle"),
    [
        (["trainer.noise=203"], "noise: Input should be less than or equal to 10"),
        (["trainer.E=1.797e308", "trainer.A=1e308"], "gives no finite loss at 39 of the 72"),
    ],
)
def test_a_mock_law_beyond_float_range_is_refused_before_training(capsys, sets, needle):
    """Noise of 203 (a loss times e^(203 z)) made every mock run fail with `OverflowError:
    math range error`; a law whose E + A overflows, with a validation error."""
    args = [arg for item in sets for arg in ("--set", item)]
    outcome = flops_fit(capsys, "config", "validate", "--preset", "mock", *args)
    assert_one_line_error(outcome, needle)


def test_config_show_of_a_bad_plot_section(capsys, tmp_path):
    """`config show` printed the [plot] section as the file had it, unchecked: a `dpi: null`
    failed to print (`NoneType is not TOML serializable`, an internal error), and a bad one
    was shown as if valid. It is now refused as `config validate` refuses it."""
    for text, needle in [("{names: [isoflop], dpi: null}", "dpi: Input should be a valid"),
                         ("{names: [isoflop], dpi: 2000000}", "dpi must be between")]:  # fmt: skip
        path = tmp_path / "study.yaml"
        path.write_text(f"plot: {text}\n")
        outcome = flops_fit(capsys, "config", "show", "-c", path)
        assert_one_line_error(outcome, "plotter 'isoflop'", needle)
