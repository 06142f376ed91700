"""Every documented command runs (issue 11, point 3).

What is collected:

- every ```console block of README.md and docs/*.md. A line starting with `$ ` is a command
  (`\\` continues it on the next line; a trailing `# comment` is dropped, as the shell does);
  the lines after it, up to the next `$ `, are its shown output. A console block without any
  `$ ` line is a list of option fragments (docs/index.md's `--set` examples): each line is
  checked with `flops-fit config validate --preset mock LINE`.
- every help block of docs/cli.md (a plain ``` block starting with `Usage: flops-fit`): it must
  equal the command's real `--help` at 80 columns.
- every `e.g. ...` in the help text of every option of every command: `e.g. --set KEY=VALUE`
  is run as written, `e.g. 1e21` as `--OPTION 1e21`, against its own command on the mock preset
  (a mock run directory for `report`), and must exit 0 (a command's examples run together, in
  one invocation).

How an example runs: the examples of one document run in order, in one fresh directory (later
ones read what earlier ones wrote), `flops-fit` in-process through `flops_fit_core.cli.main`.
Substitutions, the only ones:

- output paths: an absolute `/tmp/...` path is moved into the sandbox (and moved back in the
  output compared); relative paths land in the sandbox anyway;
- input data: a relative path under `tests/` or `plugins/` that exists in the repository is
  symlinked into the sandbox at the same relative path;
- study cost: `flops-fit run` with neither `--preset` nor `-c/--config` (the 8-minute
  `cpu-tiny` study) gets `--preset mock` when it is expected to succeed. Whatever runs, the
  `local` trainer is never allowed to train (a guard fails the example instead);
- a document whose examples use files another document writes gets them from SETUP.

Expected outcome, the one convention: an example is expected to fail (non-zero exit) exactly
when its shown output has a line starting with `Error:`; that line must then be the error the
command prints. Otherwise it must exit 0. Every other shown line (`...` stands for lines left
out) must be a line the command prints, stdout or stderr (paths substituted back).

Programs other than flops-fit go through PROGRAMS (run, parse-only or skipped, with a reason);
an unknown program fails. Single examples are skipped through SKIPS or expected to fail
through XFAILS (a source bug, strict: an entry that no longer fails, or that matches no
example, fails the test).

Regenerate the help blocks of docs/cli.md after changing options:

    uv run python -m tests.test_documented_examples --write
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest

from flops_fit_core.plugins import reset_host
from tests.clirunner import mock_study_args

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("docs/*.md"))]
HELP_DOC = "docs/cli.md"
HELP_COLUMNS = "80"
DATA_PREFIXES = ("tests/", "plugins/")
ABS_TMP = "/tmp/"
SANDBOX_TMP = "_tmp"  # where /tmp/... paths of an example go inside its sandbox

# Files a document's examples read but another document writes: commands run first, silently.
SETUP: dict[str, list[str]] = {
    # cli.md's train/plot examples use the study/ directory of README's "Stage by stage".
    "docs/cli.md": [
        "flops-fit -q plan --preset mock -o study/plan.json",
        "flops-fit -q train study/plan.json --preset mock",
        "flops-fit -q fit study/results.jsonl --preset mock",
    ],
}

# (document, command as written, comment dropped) -> why it is not run.
_SERVER = "needs a GPU box running `flops-fit serve`: plugins/api/tests/test_against_server.py runs"
SKIPS: dict[tuple[str, str], str] = {
    (
        "docs/remote.md",
        "flops-fit serve --host 127.0.0.1 --port 8765 --data-dir /srv/flops-fit "
        "--token-file ~/.flops-fit-token",
    ): f"{_SERVER} a real one on a free port",
    (
        "docs/remote.md",
        "FLOPS_FIT_TOKEN=... flops-fit run --trainer api "
        "--set trainer.base_url=https://gpu-box.example.org",
    ): f"{_SERVER} this study against it, equal to the local one",
}

SKIPS[("docs/performance.md", "uv run flops-fit run --preset gpu-small")] = (
    "needs a CUDA GPU (a machine without one refuses it in one line): "
    "plugins/torch/tests/test_gpu_preset.py checks its plan, its packing and that refusal"
)

# (document, command) -> the source bug that makes it fail; strict: it must fail.
XFAILS: dict[tuple[str, str], str] = {}


@dataclass
class Example:
    doc: str
    line: int
    command: str  # as written, continuations joined
    shown: list[str] = field(default_factory=list)
    fragment: bool = False  # a line of a console block without `$ ` commands

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def key(self) -> tuple[str, str]:
        return (self.doc, " ".join(shlex.split(self.command, comments=True)))

    @property
    def expects_error(self) -> bool:
        return any(line.startswith("Error:") for line in self.shown)


# --------------------------------------------------------------------------- collection


def _fences(text: str) -> Iterator[tuple[str, int, list[str]]]:
    """(info string, line number of the first body line, body lines) of each fenced block."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = re.match(r"^(\s*)```(\S*)\s*$", lines[i])
        if not match:
            i += 1
            continue
        indent, info = match.groups()
        body, j = [], i + 1
        while j < len(lines) and lines[j].strip() != "```":
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        yield info, i + 2, body
        i = j + 1


def collect_examples(text: str, doc: str) -> list[Example]:
    examples: list[Example] = []
    for info, first, body in _fences(text):
        if info != "console":
            continue
        if not any(line.startswith("$ ") for line in body):
            examples += [
                Example(doc, first + k, line.strip(), fragment=True)
                for k, line in enumerate(body)
                if line.strip()
            ]
            continue
        current: Example | None = None
        k = 0
        while k < len(body):
            line = body[k]
            if line.startswith("$ "):
                start, command = k, line[2:]
                while command.rstrip().endswith("\\") and k + 1 < len(body):
                    k += 1
                    command = command.rstrip()[:-1] + " " + body[k].strip()
                current = Example(doc, first + start, command.strip())
                examples.append(current)
            elif current is None:
                raise AssertionError(f"{doc}:{first + k}: output before any `$ ` command")
            else:
                current.shown.append(line)
            k += 1
    return examples


@dataclass
class HelpBlock:
    line: int  # first body line
    body: list[str]
    args: list[str]  # the command path, e.g. ["config", "show"]


def collect_help_blocks(text: str) -> list[HelpBlock]:
    blocks = []
    for info, first, body in _fences(text):
        if info == "" and body and body[0].startswith("Usage: flops-fit"):
            words = body[0].split()[2:]
            args = [w for w in words if w.isalpha() and w.islower()]
            blocks.append(HelpBlock(first, body, args))
    return blocks


# --------------------------------------------------------------------------- running


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return [ln.rstrip() for ln in (self.out + "\n" + self.err).splitlines()]


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def invoke(args: list[str], env: dict[str, str] | None = None) -> Outcome:
    """`flops-fit ARGS` in-process, stdout and stderr captured."""
    from flops_fit_core.cli import main

    out, err = io.StringIO(), io.StringIO()
    with (
        _environ(COLUMNS=HELP_COLUMNS, **(env or {})),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        if env:
            reset_host()  # FLOPS_FIT_DISABLE_PLUGINS is read when the host loads
        try:
            code = main(list(args))
        finally:
            if env:
                reset_host()
    return Outcome(code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _no_local_training() -> Iterator[None]:
    """No documented example may train the `local` trainer here (minutes, not seconds)."""
    from flops_fit_core.executors import ProcessExecutor, SerialExecutor
    from flops_fit_torch.trainer import LocalTrainer

    originals = {cls: cls.map for cls in (SerialExecutor, ProcessExecutor)}

    def guard(original):
        def map(self, trainer, specs, *args, **kwargs):
            specs = list(specs)
            if specs and isinstance(trainer, LocalTrainer):
                raise AssertionError(
                    f"a documented example would train {len(specs)} runs with 'local'"
                )
            return original(self, trainer, specs, *args, **kwargs)

        return map

    for cls, original in originals.items():
        cls.map = guard(original)
    try:
        yield
    finally:
        for cls, original in originals.items():
            cls.map = original


def _parse_only(module: str, why: str) -> Callable[[Example, list[str], dict[str, str]], Outcome]:
    """An example of `python -m MODULE` whose options are parsed, not run (`why`)."""

    def run(example: Example, args: list[str], env: dict[str, str]) -> Outcome:
        import importlib

        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                importlib.import_module(module).parse_args(args)
            except SystemExit as exc:
                return Outcome(int(exc.code or 0), "", err.getvalue())
        return Outcome(0, "", "")

    run.__doc__ = f"Parse only: {why}; its options must still exist."
    return run


def _flops_fit(example: Example, args: list[str], env: dict[str, str]) -> Outcome:
    if _is_default_study_run(args) and not example.expects_error:
        args = [*args, "--preset=mock"]  # study cost: cpu-tiny trains for minutes
    with _no_local_training():
        return invoke(args, env)


# The program an example runs (after `uv run` and VAR=value prefixes), and how: a callable
# runs it, a string skips it with that reason.
PROGRAMS: dict[str, Callable[[Example, list[str], dict[str, str]], Outcome] | str] = {
    "flops-fit": _flops_fit,
    "python -m flops_fit_core": _flops_fit,
    "python -m flops_fit_torch.bench": _parse_only(
        "flops_fit_torch.bench", "a benchmark run takes CPU minutes"
    ),
    "python -m flops_fit_torch.bench.sweep": _parse_only(
        "flops_fit_torch.bench.sweep", "it trains a study's shapes twice, on a GPU"
    ),
    "tools/gpu/prepare.sh": "downloads wheels from PyPI: no network in tests",
    "tools/gpu/check.sh": "needs a CUDA GPU: the measurements of docs/performance.md",
    "pytest": "runs the test suite (this test is part of it)",
}


def split_command(command: str) -> tuple[dict[str, str], str, list[str]]:
    """(environment, program, arguments) of a documented command."""
    words = shlex.split(command, comments=True)
    env = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    if words[:2] == ["uv", "run"]:
        words = words[2:]
        while words and words[0].startswith("--"):  # uv run's own flags (--locked, ...)
            words.pop(0)
    for program in sorted(PROGRAMS, key=len, reverse=True):
        n = len(program.split())
        if words[:n] == program.split():
            return env, program, words[n:]
    raise LookupError(
        f"unknown program in {command!r}: add it to PROGRAMS in {Path(__file__).name}"
    )


def _substitute(arg: str, sandbox: Path) -> str:
    """Output paths under /tmp/ move into the sandbox; input data is linked into it."""
    if ABS_TMP in arg:
        arg = arg.replace(ABS_TMP, f"{sandbox}/{SANDBOX_TMP}/")
    for candidate in (arg, arg.split("=", 1)[-1]):
        if candidate.startswith(DATA_PREFIXES) and (ROOT / candidate).exists():
            target = sandbox / candidate
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(ROOT / candidate)
    return arg


def _is_default_study_run(args: list[str]) -> bool:
    words = [a for a in args if a not in ("-q", "--quiet", "-v", "--verbose")]
    if not words or words[0] != "run":
        return False
    return not any(
        a in ("--preset", "-c", "--config") or a.startswith(("--preset=", "--config="))
        for a in words
    )


def _check(example: Example, outcome: Outcome, sandbox: Path) -> list[str]:
    """What is wrong with the outcome of an example, as messages (none: it is fine)."""
    here = f"{sandbox}/{SANDBOX_TMP}/"
    actual = [ln.replace(here, ABS_TMP).replace(f"{sandbox}/", "") for ln in outcome.lines]
    problems = []
    if example.expects_error:
        if outcome.code == 0:
            problems.append("exited 0 but the docs show an error")
    elif outcome.code != 0:
        problems.append(f"exited {outcome.code}")
    missing = [ln.rstrip() for ln in example.shown if ln.strip() not in ("", "...") and ln.rstrip()]
    missing = [ln for ln in missing if ln not in actual]
    if missing:
        problems.append("shown but not printed: " + " | ".join(missing))
    if not problems:
        return []
    tail = "\n".join(actual[-15:])
    return [f"{example.id}: $ {example.command}\n  " + "; ".join(problems) + f"\n{tail}"]


def run_example(example: Example, sandbox: Path) -> tuple[str, list[str]]:
    """('ran' | 'skipped: why', problems) for one example, run with cwd = sandbox."""
    if example.key in SKIPS:
        return "skipped: " + SKIPS[example.key], []
    if example.fragment:
        fragment = shlex.split(example.command, comments=True)
        env, program, args = {}, "flops-fit", ["config", "validate", "--preset", "mock", *fragment]
    else:
        try:
            env, program, args = split_command(example.command)
        except LookupError as exc:
            return "ran", [f"{example.id}: {exc}"]
    runner = PROGRAMS[program]
    if isinstance(runner, str):
        return "skipped: " + runner, []
    args = [_substitute(a, sandbox) for a in args]
    return "ran", _check(example, runner(example, args, env), sandbox)


def run_examples(examples: list[Example], sandbox: Path, fail_fast: bool = False) -> list[str]:
    """Run examples in order in `sandbox`; the problems found (XFAILS applied, strictly)."""
    (sandbox / SANDBOX_TMP).mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    old = Path.cwd()
    os.chdir(sandbox)
    try:
        for example in examples:
            _, found = run_example(example, sandbox)
            if example.key in XFAILS:  # strict: it must still fail
                found = [] if found else [f"{example.id}: passes now; remove it from XFAILS"]
            problems += found
            if found and fail_fast:
                break
    finally:
        os.chdir(old)
    return problems


@contextlib.contextmanager
def _toy_plugin(text: str, sandbox: Path) -> Iterator[None]:
    """The plugin guide's `flops-fit-toy`, from its own code block, installed for its examples:
    the module on sys.path (process workers inherit it) and registered like an entry point."""
    from flops_fit_core.plugins import get_host

    blocks = [body for info, _, body in _fences(text) if info == "python"]
    source = next(b for b in blocks if any("class ToyTrainer" in ln for ln in b))
    package = sandbox / "_site" / "flops_fit_toy"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("\n".join(source) + "\n")
    sys.path.insert(0, str(package.parent))
    try:
        import flops_fit_toy

        get_host().register(flops_fit_toy, "toy", "flops-fit-toy", "0.1.0")
        yield
    finally:
        sys.path.remove(str(package.parent))
        sys.modules.pop("flops_fit_toy", None)
        reset_host()


# A document whose examples need something installed first: a context manager(text, sandbox).
PREPARE = {"docs/plugins.md": _toy_plugin}


def run_document(doc: str, sandbox: Path, text: str | None = None, **kw) -> list[str]:
    text = (ROOT / doc).read_text() if text is None else text
    setup = [Example(f"SETUP[{doc}]", i, c) for i, c in enumerate(SETUP.get(doc, []))]
    problems = run_examples(setup, sandbox)
    assert not problems, problems
    prepare = PREPARE.get(doc)
    with prepare(text, sandbox) if prepare else contextlib.nullcontext():
        return run_examples(collect_examples(text, doc), sandbox, **kw)


# --------------------------------------------------------------------------- help blocks


def real_help(args: list[str]) -> list[str]:
    outcome = invoke([*args, "--help"])
    assert outcome.code == 0, outcome
    return [ln.rstrip() for ln in outcome.out.rstrip("\n").splitlines()]


def write_help_blocks(doc: str = HELP_DOC) -> bool:
    """Rewrite the help blocks of `doc` from the commands' real --help; True if it changed."""
    path = ROOT / doc
    lines = path.read_text().splitlines(keepends=True)
    for block in reversed(collect_help_blocks(path.read_text())):
        start = block.line - 1
        lines[start : start + len(block.body)] = [ln + "\n" for ln in real_help(block.args)]
    new = "".join(lines)
    changed = new != path.read_text()
    if changed:
        path.write_text(new)
    return changed


# --------------------------------------------------------------------------- help examples


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple]:
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


def collect_help_examples() -> list[tuple[tuple[str, ...], list[str]]]:
    """(command path, option arguments) for each `e.g. ...` in an option's help text."""
    from flops_fit_core.cli import cli

    invoke(["--version"])  # adds plugins' commands, once, as every real invocation does
    found = []
    for path, command in _commands(cli):
        for param in command.params:
            if not isinstance(param, click.Option):
                continue
            for text in re.findall(r"e\.g\. (.+?)(?: \(|\.?$|\.\s)", param.help or ""):
                words = shlex.split(text)
                if not words[0].startswith("-"):
                    if param.is_flag:
                        continue
                    words = [max(param.opts, key=len), *words]
                found.append((path, words))
    return found


# Each command's arguments on the mock study the fixture builds, before the example's option.
BASE_ARGS: dict[tuple[str, ...], list[str]] = {
    ("run",): ["-q", "run", "--preset", "mock", "--out", "r"],
    ("plan",): ["-q", "plan", "--preset", "mock", "-o", "p/plan.json"],
    ("train",): ["-q", "train", "study/plan.json", "--preset", "mock"],
    ("fit",): ["-q", "fit", "study/results.jsonl", "--preset", "mock", "-o", "f/fit.json"],
    ("predict",): ["predict", "study/fit.json"],
    ("plot",): ["-q", "plot", "study/results.jsonl", "study/fit.json", "--preset", "mock"],
    ("report",): ["-q", "report", "r"],
    ("config", "show"): ["config", "show", "--preset", "mock"],
    ("config", "validate"): ["config", "validate", "--preset", "mock"],
}


# --------------------------------------------------------------------------- tests


def test_every_document_has_examples_and_every_program_is_known():
    every = [e for doc in DOCS for e in collect_examples((ROOT / doc).read_text(), doc)]
    assert len([e for e in every if e.doc == "README.md"]) >= 8
    unknown = []
    for example in every:
        if example.fragment:
            continue
        try:
            split_command(example.command)
        except LookupError as exc:
            unknown.append(f"{example.id}: {exc}")
    assert not unknown, unknown


def test_no_stale_skips_or_xfails():
    keys = {e.key for doc in DOCS for e in collect_examples((ROOT / doc).read_text(), doc)}
    stale = [k for k in [*SKIPS, *XFAILS] if k not in keys]
    assert not stale, f"SKIPS/XFAILS entries that match no documented example: {stale}"
    assert not {*SETUP, *PREPARE} - set(DOCS), "SETUP/PREPARE name a missing document"


@pytest.mark.parametrize("doc", DOCS)
def test_documented_examples_run(doc, tmp_path):
    problems = run_document(doc, tmp_path)
    assert not problems, "\n\n".join(problems)


@pytest.mark.parametrize(
    "block", collect_help_blocks((ROOT / HELP_DOC).read_text()), ids=lambda b: f"{b.line}"
)
def test_help_blocks_are_the_real_help(block):
    shown = [ln.rstrip() for ln in block.body]
    assert shown == real_help(block.args), (
        f"{HELP_DOC}:{block.line}: `flops-fit {' '.join(block.args)} --help` changed; "
        "regenerate with `uv run python -m tests.test_documented_examples --write`"
    )


def test_every_command_has_a_help_block():
    from flops_fit_core.cli import cli

    invoke(["--version"])  # adds plugins' commands
    documented = {tuple(b.args) for b in collect_help_blocks((ROOT / HELP_DOC).read_text())}
    commands = {(), *(path for path, _ in _commands(cli))}
    assert commands <= documented, f"no help block in {HELP_DOC}: {commands - documented}"


@pytest.fixture(scope="module")
def mock_study(tmp_path_factory):
    """study/ (plan, results, fit) and a run directory r/ of the mock preset."""
    sandbox = tmp_path_factory.mktemp("mock-study")
    setup = [
        *SETUP["docs/cli.md"],
        "flops-fit " + shlex.join(mock_study_args("r")),
    ]
    reset_host()
    problems = run_examples([Example("mock_study", i, c) for i, c in enumerate(setup)], sandbox)
    reset_host()
    assert not problems, problems
    return sandbox


def test_help_examples_are_found():
    found = collect_help_examples()
    assert any(words[0] == "--set" for _, words in found), found
    unknown = sorted({path for path, _ in found} - set(BASE_ARGS))
    assert not unknown, f"commands with an e.g. in their help but no BASE_ARGS: {unknown}"


def help_examples_by_command() -> list[tuple[tuple[str, ...], list[str]]]:
    """Each command with all of its options' examples, to run in one invocation.

    The options are independent, so one run checks them all (any that fails fails it), at one
    mock study's cost per command rather than one per example.
    """
    grouped: dict[tuple[str, ...], list[str]] = {}
    for path, words in collect_help_examples():
        grouped.setdefault(path, []).extend(words)
    return list(grouped.items())


@pytest.mark.parametrize(
    "path,words",
    help_examples_by_command(),
    ids=lambda v: " ".join(v) if isinstance(v, tuple | list) else str(v),
)
def test_help_examples_run(path, words, mock_study, monkeypatch):
    monkeypatch.chdir(mock_study)
    with _no_local_training():
        outcome = invoke([*BASE_ARGS[path], *words])
    assert outcome.code == 0, (path, words, outcome.err)


# --------------------------------------------------------------------------- meta


def test_a_broken_readme_example_fails(tmp_path):
    text = (ROOT / "README.md").read_text()
    broken = text.replace(
        "$ uv run flops-fit plan --preset mock -o study/plan.json",
        "$ uv run flops-fit plan --preset mock --no-such-option -o study/plan.json",
    )
    assert broken != text, "the README example this test breaks is gone; pick another"
    examples = [e for e in collect_examples(broken, "README.md") if "--no-such-option" in e.command]
    problems = run_examples(examples, tmp_path)
    assert len(problems) == 1 and "exited 2" in problems[0], problems


def test_the_runner_catches_every_kind_of_drift(tmp_path):
    text = "\n".join(
        [
            "```console",
            "$ flops-fit plugins   # a comment",
            "trainer   mock         flops-fit-mock 0.1.0",
            "...",
            "$ flops-fit plugins",
            "Error: nothing is wrong",  # shows an error, but it succeeds
            "$ flops-fit plugins",
            "trainer   nothing      flops-fit-mock 0.1.0",  # output that is not printed
            "$ flops-fit config validate --preset mock --set trainer.nosie=1",
            "Error: trainer 'mock': unknown key 'nosie' (known: something else)",
            "$ make everything",  # an unknown program
            "```",
        ]
    )
    examples = collect_examples(text, "x.md")
    assert [e.line for e in examples] == [2, 5, 7, 9, 11]
    problems = run_examples(examples, tmp_path)
    assert [p.split(":")[1] for p in problems] == ["5", "7", "9", "11"], problems


if __name__ == "__main__":  # uv run python -m tests.test_documented_examples --write
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.test_documented_examples --write")
    changed = write_help_blocks()
    print(f"{HELP_DOC}: " + ("help blocks rewritten" if changed else "help blocks up to date"))
