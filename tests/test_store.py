"""The append-only results store: durable appends, torn records, which record satisfies an id."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flops_fit_core import InputError, RunResult, TrainerInfo
from flops_fit_core.store import ResultsStore
from flops_fit_core.testing import tiny_specs

INFO = TrainerInfo(name="t", version="1")


def ok(spec, loss=3.0):
    return RunResult.success(spec, INFO, loss=loss, tokens_trained=spec.tokens)


def test_appends_and_reads_back(tmp_path):
    store = ResultsStore(tmp_path / "results.jsonl")
    specs = tiny_specs(3)
    for s in specs:
        store.append(ok(s))
    loaded = store.load()
    assert [r.experiment_id for r in loaded.records] == [s.id for s in specs]
    assert loaded.torn_lines == []


def test_last_ok_record_wins_and_failures_are_kept(tmp_path):
    store = ResultsStore(tmp_path / "results.jsonl")
    a, b = tiny_specs(2)
    store.append(RunResult.failure(a, INFO, "boom"))
    store.append(ok(a, 3.0))
    store.append(ok(a, 2.5))
    store.append(RunResult.failure(a, INFO, "later failure does not hide the success"))
    store.append(RunResult.failure(b, INFO, "boom"))
    loaded = store.load()
    assert len(loaded.records) == 5
    assert loaded.latest()[a.id].loss == 2.5
    assert [r.experiment_id for r in loaded.failed()] == [b.id]


def test_a_torn_last_line_is_reported_and_the_rest_kept(tmp_path):
    path = tmp_path / "results.jsonl"
    store = ResultsStore(path)
    specs = tiny_specs(3)
    store.append(ok(specs[0]))
    store.append(ok(specs[1]))
    full = ok(specs[2]).model_dump_json()
    with open(path, "a") as fh:
        fh.write(full[: len(full) // 2])  # a kill -9 mid-write
    loaded = store.load()
    assert loaded.torn_lines == [3]
    assert "skipped 1 torn record (line 3" in loaded.skipped_note()
    assert [r.experiment_id for r in loaded.records] == [specs[0].id, specs[1].id]
    # The next append sets the torn bytes aside and truncates the file first: nothing lost.
    store.append(ok(specs[2]))
    again = store.load()
    assert again.torn_lines == []
    assert set(again.latest()) == {s.id for s in specs}
    (aside,) = tmp_path.glob("results.jsonl.torn-*")
    assert aside.read_text() == full[: len(full) // 2]


def test_every_prefix_of_a_last_line_is_torn_and_healed(tmp_path):
    """Issue 12: a torn line of any length (a full disk left `{"schema_v`) is skipped on
    load and set aside by `heal`, leaving the file byte for byte as before the append."""
    path = tmp_path / "results.jsonl"
    store = ResultsStore(path)
    a, b = tiny_specs(2)
    store.append(ok(a))
    finished = path.read_bytes()
    line = ok(b).model_dump_json().encode()
    for n in range(1, len(line)):
        path.write_bytes(finished + line[:n])
        loaded = store.load()
        assert (len(loaded), loaded.torn_lines) == (1, [2]), n
        aside = store.heal()
        assert aside is not None and aside.read_bytes() == line[:n], n
        assert path.read_bytes() == finished, n
        aside.unlink()
    # the whole record without its newline is complete: only the newline is added
    path.write_bytes(finished + line)
    assert store.heal() is None
    assert path.read_bytes() == finished + line + b"\n"
    assert len(store.load()) == 2


def test_a_second_writer_is_refused_naming_the_first(tmp_path):
    from flops_fit_core import StudyLocked

    store = ResultsStore(tmp_path / "results.jsonl")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store.path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        holder_named = rf"in use by another flops-fit \(pid {holder.pid} "
        with pytest.raises(StudyLocked, match=holder_named), store.writer():
            pass
    finally:
        holder.kill()
        holder.wait(10)
    # the kernel released the dead holder's lock: it is taken over
    with store.writer():
        store.append(ok(tiny_specs(1)[0]))
    assert len(store.load()) == 1


HOLDER = """
import sys, time
from flops_fit_core.store import ResultsStore
with ResultsStore(sys.argv[1]).writer():
    print("holding", flush=True)
    time.sleep(60)
"""


def test_a_corrupt_middle_line_is_an_error_naming_it(tmp_path):
    path = tmp_path / "results.jsonl"
    store = ResultsStore(path)
    store.append(ok(tiny_specs(1)[0]))
    with open(path, "a") as fh:
        fh.write("{not json}\n")
    store.append(ok(tiny_specs(2)[1]))
    with pytest.raises(InputError, match=r"results.jsonl:2"):
        store.load()


def test_appending_never_rewrites_earlier_bytes(tmp_path):
    path = tmp_path / "results.jsonl"
    store = ResultsStore(path)
    specs = tiny_specs(3)
    store.append(ok(specs[0]))
    before = path.read_bytes()
    store.append(ok(specs[1]))
    assert path.read_bytes().startswith(before)


WRITER = """
import sys
from flops_fit_core import RunResult, TrainerInfo
from flops_fit_core.store import ResultsStore
from flops_fit_core.testing import tiny_specs
store, start = ResultsStore(sys.argv[1]), int(sys.argv[2])
for spec in tiny_specs(40)[start : start + 20]:
    store.append(RunResult.success(spec, TrainerInfo(name="t"), loss=3.0, tokens_trained=1))
"""


def test_concurrent_writers_interleave_whole_lines(tmp_path):
    path = tmp_path / "results.jsonl"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(s)]) for s in (0, 20)]
    assert [p.wait(60) for p in procs] == [0, 0]
    loaded = ResultsStore(path).load()
    assert loaded.torn_lines == []
    assert len(loaded.latest()) == 40


def test_missing_file_is_empty(tmp_path):
    assert ResultsStore(tmp_path / "none.jsonl").load().records == []


SEED0 = TrainerInfo.made_by("t", "1", {"seed": 0})
SEED7 = TrainerInfo.made_by("t", "1", {"seed": 7})


def test_only_records_of_the_asked_trainer_options_satisfy_an_id(tmp_path):
    """Issue 11: a record made under other trainer options does not satisfy its experiment
    unless kept; records from before digests (options unknown) satisfy as they always did."""
    store = ResultsStore(tmp_path / "results.jsonl")
    a, b, c = tiny_specs(3)
    store.append(RunResult.success(a, SEED0, loss=3.0, tokens_trained=a.tokens))
    store.append(RunResult.success(b, SEED0, loss=3.1, tokens_trained=b.tokens))
    store.append(RunResult.success(b, SEED7, loss=3.2, tokens_trained=b.tokens))
    store.append(RunResult.success(c, INFO, loss=3.3, tokens_trained=c.tokens))  # legacy
    store.append(RunResult.failure(a, SEED7, "boom"))
    loaded = store.load()
    seven = SEED7.options_digest
    assert loaded.statuses(seven) == {b.id: "ok", c.id: "ok", a.id: "failed"}
    assert loaded.statuses(SEED0.options_digest) == {a.id: "ok", b.id: "ok", c.id: "ok"}
    assert {r.experiment_id: r.loss for r in loaded.ok(digest=seven)} == {b.id: 3.2, c.id: 3.3}
    # a has a record of seed 7 (its failure): not an id left only to other options
    assert loaded.other_options(seven) == {}
    other = loaded.other_options(SEED7.options_digest.replace(seven[0], "x"))  # a third digest
    assert {k: r.loss for k, r in other.items()} == {a.id: 3.0, b.id: 3.2}
    kept = loaded.statuses(seven, keep_other=True)
    assert kept[a.id] == "ok"  # an ok result of other options beats a failure of these
    assert loaded.unknown_options() == 1
    assert loaded.statuses() == {a.id: "ok", b.id: "ok", c.id: "ok"}  # no digest: as before


def test_differences_name_the_changed_options():
    old = TrainerInfo.made_by("local", "1", {"optimizer": {"beta2": 0.95, "eps": 1e-8}, "x": 1})
    new = TrainerInfo.made_by("local", "1", {"optimizer": {"beta2": 0.99, "eps": 1e-8}, "x": 1})
    assert new.differences(old) == "optimizer.beta2 0.95 -> 0.99"
    assert new.differences(INFO) == "options unknown"
    assert old.options_digest != new.options_digest
    assert TrainerInfo.made_by("local", "2", old.options).options_digest == old.options_digest
