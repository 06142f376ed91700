"""Fault injection: `flops-fit run` killed with SIGKILL (its whole process group) at random
moments of every stage, resumed each time, ends exactly where an uninterrupted run ends.

The promise of docs/index.md under test: results are appended and fsynced one record at a time,
every other file is replaced whole (written aside, then renamed), so a kill -9 loses at most the
runs in flight, a torn last record is set aside and reported, and a resumed study finishes with
the results, fit and files of a study never interrupted.

Each kill is aimed at a stage: the driver reads the child's stderr as it goes and, once the line
that opens the stage appears ("planning", "training", "fitting", "plotting"; the report is the
last part of plotting), waits a random part of the time that stage took in an uninterrupted
reference run. After every kill no file a reader relies on is truncated; after the last, one
more run finishes and its run directory is compared with the reference's. The draws come from a
seeded generator: a failure names its seed and replays.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.clirunner import sigint_as_from_a_terminal
from tests.test_local_study import SMALL

pytestmark = pytest.mark.robustness

#: The stages a kill is aimed at. Each but the report opens with a line on stderr that starts
#: with its name; the report has none: it is written after the last figure, inside "plotting".
STAGES = ("planning", "training", "fitting", "plotting", "report")
PNG_END = b"IEND\xaeB`\x82"
SEED = 19


@dataclass
class Child:
    """A `flops-fit` process in its own process group, its stderr read line by line as it comes."""

    proc: subprocess.Popen
    started: float
    lines: list[tuple[float, str]] = field(default_factory=list)

    @property
    def wall_started(self) -> float:
        """When it started, by the wall clock (what file mtimes are measured in)."""
        return time.time() - (time.monotonic() - self.started)

    def seen(self, marker: str) -> float | None:
        for at, line in list(self.lines):
            if line.startswith(marker):
                return at
        return None

    def kill(self) -> bool:
        """SIGKILL to the whole process group; False when the command had already ended."""
        if self.proc.poll() is not None:
            return False
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        return True

    def text(self) -> str:
        return "".join(line for _, line in self.lines)


def start(args: list[str], env: dict[str, str]) -> Child:
    proc = subprocess.Popen(
        [sys.executable, "-m", "flops_fit_core", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group: the kill takes its workers too
        preexec_fn=sigint_as_from_a_terminal,
    )
    child = Child(proc, time.monotonic())

    def read():
        for line in proc.stderr:
            child.lines.append((time.monotonic() - child.started, line))

    threading.Thread(target=read, daemon=True).start()
    return child


def finish(child: Child, timeout: float = 300) -> int:
    try:
        return child.proc.wait(timeout=timeout)
    finally:
        child.kill()  # a child that outlived its timeout goes too, by its process group


@dataclass
class Timeline:
    """How long each stage lasted in the uninterrupted run (seconds), and what it made."""

    length: dict[str, float]
    runs: int  # experiments trained
    figures: list[str]  # names of the files in figures/


def timeline(child: Child, run: Path) -> Timeline:
    """The reference run's stages: stderr markers, then the figures' and report's mtimes (the
    report starts after the last figure is written and ends when report.html appears)."""
    wall_zero = child.wall_started
    marks = {stage: child.seen(stage) for stage in STAGES[:-1]}
    assert None not in marks.values(), child.text()
    figures = [p for p in (run / "figures").iterdir() if p.is_file()]
    marks["report"] = max(p.stat().st_mtime for p in figures) - wall_zero
    end = (run / "report.html").stat().st_mtime - wall_zero
    ends = [*(marks[s] for s in STAGES[1:]), end]
    lengths = {s: max(e - marks[s], 0.05) for s, e in zip(STAGES, ends, strict=True)}
    return Timeline(lengths, len(records(run)), sorted(p.name for p in figures))


def kill_in(child: Child, stage: str, ref: Timeline, run: Path, rng: random.Random):
    """Kill `child` at a random moment of `stage`: once the stage has begun (its marker on
    stderr; for the report, every figure of the reference redrawn by this child), after a
    random part of the stage's reference length (for training: of the part of it the runs
    still to train took). Returns (killed, the last line printed)."""
    length = ref.length[stage]
    if stage == "training":
        length *= max(ref.runs - complete_records(run), 1) / ref.runs
    begun = child.wall_started

    def started() -> bool:
        if stage != "report":
            return child.seen(stage) is not None
        try:
            return all((run / "figures" / f).stat().st_mtime >= begun for f in ref.figures)
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 120
    while not started():
        if child.proc.poll() is not None or time.monotonic() > deadline:
            child.kill()
            return False, child.text()
        time.sleep(0.002)
    time.sleep(rng.random() * length)
    last = child.lines[-1][1].strip() if child.lines else ""
    return child.kill(), last


def intact(run: Path) -> list[str]:
    """What a kill left truncated or unreadable: nothing, when replacing files is atomic."""
    problems = []
    for name in ("plan.json", "fit.json", *(f"fits/{p.name}" for p in run.glob("fits/*.json"))):
        if (run / name).exists():
            try:
                json.loads((run / name).read_text())
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
    if (run / "config.toml").exists():
        try:
            tomllib.loads((run / "config.toml").read_text())
        except tomllib.TOMLDecodeError as exc:
            problems.append(f"config.toml: {exc}")
    if (run / "report.html").exists() and not (run / "report.html").read_text().rstrip().endswith(
        "</html>"
    ):
        problems.append("report.html: truncated")
    for png in run.glob("figures/*.png"):
        data = png.read_bytes()
        if not (data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(PNG_END)):
            problems.append(f"{png.name}: truncated")
    for svg in run.glob("figures/*.svg"):
        try:
            ET.parse(svg)
        except ET.ParseError as exc:
            problems.append(f"{svg.name}: {exc}")
    results = run / "results.jsonl"
    if results.exists():
        lines = results.read_bytes().split(b"\n")
        for number, line in enumerate(lines[:-1], 1):  # the last is b"", or a torn record
            try:
                json.loads(line)
            except ValueError:
                problems.append(f"results.jsonl line {number} is not a whole record")
    return problems


def complete_records(run: Path) -> int:
    results = run / "results.jsonl"
    return results.read_bytes().count(b"\n") if results.exists() else 0


def records(run: Path) -> dict[str, dict]:
    """The finished study's results by experiment id; asserts none is recorded twice."""
    out: dict[str, dict] = {}
    for line in (run / "results.jsonl").read_text().splitlines():
        record = json.loads(line)
        assert record["experiment_id"] not in out, f"{record['experiment_id']} recorded twice"
        out[record["experiment_id"]] = record
    return out


@dataclass
class Kill:
    stage: str
    last_line: str
    results: int  # whole records in results.jsonl after the kill
    torn: bool  # a record was cut mid-write


def kill_and_resume(args, env, run, ref, kills_per_stage, rng) -> list[Kill]:
    """Kill the study at `kills_per_stage` random moments of each stage, resuming it each
    time, and check after every kill that nothing is truncated. The kills aimed at planning
    and training come first (in a random order), while there is training left to cut into;
    the rest follow in a random order. A torn record must be reported by the next run."""
    early = [s for s in ("planning", "training") for _ in range(kills_per_stage.get(s, 0))]
    late = [s for s in STAGES[2:] for _ in range(kills_per_stage.get(s, 0))]
    rng.shuffle(early)
    rng.shuffle(late)
    kills: list[Kill] = []
    torn_pending = False  # a torn record the next run to reach training must report
    for stage in early + late:
        for _ in range(5):  # a run that ended before its moment came is tried again
            child = start(args, env)
            killed, last = kill_in(child, stage, ref, run, rng)
            if torn_pending and child.seen("training") is not None:
                assert "torn record" in child.text(), child.text()
                torn_pending = False
            if killed:
                break
            assert child.proc.returncode == 0, (child.proc.returncode, child.text())
        assert killed, f"could not kill the study during {stage} (seed {SEED})"
        problems = intact(run)
        assert not problems, f"after a kill during {stage} (seed {SEED}): {problems}"
        data = (run / "results.jsonl").read_bytes() if (run / "results.jsonl").exists() else b""
        torn = bool(data) and not data.endswith(b"\n")
        torn_pending |= torn
        kills.append(Kill(stage, last, complete_records(run), torn))
    for k in kills:
        torn = " torn" if k.torn else ""
        print(f"killed in {k.stage:<9} results {k.results:>3}{torn}  after {k.last_line[:60]!r}")
    return kills, torn_pending


def env_with(**extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env.pop("FLOPS_FIT_DISABLE_PLUGINS", None)
    return env


def test_a_mock_study_killed_at_random_moments_of_every_stage_ends_as_if_never_killed(tmp_path):
    """>= 20 SIGKILLs spread over planning, training (appending records), fitting, plotting
    and the report; then the results (no id lost, none twice, equal losses), plan.json,
    config.toml, fit.json and fits/*.json equal the uninterrupted run's, byte for byte."""
    env = env_with()
    reference, run = tmp_path / "reference", tmp_path / "killed"
    # each run takes 20 ms: training lasts long enough (~1.5 s) for kills to cut into it
    slow = ["--set", "trainer.seconds_per_run=0.02"]
    child = start(["run", "--preset", "mock", "--out", str(reference), *slow], env)
    assert finish(child) == 0, child.text()
    ref = timeline(child, reference)

    rng = random.Random(SEED)
    args = ["run", "--preset", "mock", "--out", str(run), *slow]
    kills, torn_pending = kill_and_resume(args, env, run, ref, {s: 4 for s in STAGES}, rng)
    assert len(kills) >= 20
    cut_into_training = [k for k in kills if 0 < k.results < ref.runs]
    assert len(cut_into_training) >= 3, kills  # kills landed between appended records
    last = start(args, env)
    assert finish(last) == 0, last.text()
    assert not torn_pending or "torn record" in last.text()
    assert not intact(run)

    expected, got = records(reference), records(run)
    assert sorted(got) == sorted(expected)  # no id lost, none duplicated (records() checks)
    for rid, record in expected.items():
        assert got[rid]["loss"] == record["loss"], rid
        assert got[rid]["status"] == record["status"] == "ok"
    for name in (
        "plan.json",
        "config.toml",
        "fit.json",
        *(f"fits/{p.name}" for p in reference.glob("fits/*.json")),
    ):
        assert (run / name).read_bytes() == (reference / name).read_bytes(), name
    assert sorted(p.name for p in (run / "figures").iterdir()) == sorted(
        p.name for p in (reference / "figures").iterdir()
    )
    leftovers = [p.name for p in run.rglob("*") if ".tmp" in p.name]
    assert not leftovers, leftovers


#: The shrunk default study of tests/test_local_study.py, checkpointing every 20 steps so that
#: a resumed run restarts mid-way, drawing one figure and the report.
LOCAL = [*SMALL, "trainer.checkpoint_every_steps=20", "plot.names=['isoflop', 'report']"]


def test_a_local_study_killed_while_it_trains_ends_with_bitwise_equal_losses(tmp_path):
    """The `local` trainer (CPU, fp32) killed >= 5 times, mostly mid-run: runs resume from
    their checkpoints, and every final loss equals the uninterrupted study's bit for bit."""
    env = env_with(FLOPS_FIT_CACHE=str(tmp_path / "cache"))
    reference, run = tmp_path / "reference", tmp_path / "killed"
    sets = [a for item in LOCAL for a in ("--set", item)]
    child = start(["run", "--out", str(reference), *sets], env)
    assert finish(child) == 0, child.text()
    ref = timeline(child, reference)

    rng = random.Random(SEED)
    args = ["run", "--out", str(run), *sets]
    kills, torn_pending = kill_and_resume(
        args, env, run, ref, {"training": 5, "fitting": 1, "report": 1}, rng
    )
    assert len([k for k in kills if 0 < k.results < ref.runs]) >= 3, kills
    last = start(args, env)
    assert finish(last) == 0, last.text()
    assert not torn_pending or "torn record" in last.text()
    assert not intact(run)
    expected, got = records(reference), records(run)
    assert sorted(got) == sorted(expected)
    for rid, record in expected.items():
        assert got[rid]["loss"] == record["loss"], rid  # bitwise: resumed from checkpoints
        assert got[rid]["train_loss"] == record["train_loss"], rid
    assert (run / "fit.json").read_bytes() == (reference / "fit.json").read_bytes()
