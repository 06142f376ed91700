"""Fuzz: plan.json, broken, through `train` (fresh and resuming) and `run` over it.

The base is the mock study's plan; each example edits it anywhere (a field of another type, a
key removed or added, an experiment repeated, its text cut), or edits one experiment's spec
where the checks are (ids, shapes, budgets, conventions). `train` must refuse with one line or
train with the mock trainer, and never touch the plan it was given.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.clirunner import NO_FIGURES, flops_fit, snapshot
from tests.robustness.fuzz_support import (
    ODD_VALUES,
    Broken,
    assert_promise,
    copy_study,
    mutate_json,
)
from tests.robustness.profiles import fuzz_settings

pytestmark = pytest.mark.robustness

#: Fields of an experiment worth breaking, and values each may get besides `ODD_VALUES`.
SPEC_FIELDS = {
    ("id",): ["", "abc", "3244b4b52188"],
    ("budget",): [1.0, 1e40, -1e18],
    ("params",): [1, 10**15],
    ("tokens",): [1, 10**20, 2**63],
    ("learning_rate",): [1e-30, 1e10],
    ("batch_size",): [1, 2**40],
    ("schedule",): ["wsd", "constant", "cosin", ""],
    ("seed",): [-1, 2**63],
    ("extras",): [{"note": "x"}, {"a": [1, {"b": None}]}],
    ("conventions",): [{"params": "non_embedding", "flops": "exact"}, {"flops": "7n"}],
    ("shape", "d_model"): [1, 7, 2**31],
    ("shape", "n_heads"): [3, 128],
    ("shape", "n_layers"): [1, 10**6],
    ("shape", "vocab_size"): [1, 10**9],
    ("shape", "seq_len"): [1, 10**9],
}


def _small_plan(plan: dict, n: int) -> dict:
    """The plan with its first `n` experiments only (train fewer runs: faster examples)."""
    return {**plan, "experiments": plan["experiments"][:n]}


@st.composite
def broken_plans(draw, plan: dict) -> Broken:
    plan = _small_plan(plan, draw(st.sampled_from([0, 1, 3, 9, 72])))
    kind = draw(st.sampled_from(["spec", "spec", "mutate", "mutate", "text", "valid"]))
    if kind == "valid" or (not plan["experiments"] and kind == "spec"):
        return Broken(json.dumps(plan).encode(), [f"{len(plan['experiments'])} experiments"])
    if kind == "text":
        text = json.dumps(plan, indent=2)
        cut = draw(st.integers(0, len(text) - 1))
        choice = draw(st.sampled_from(["cut", "garbage", "bom", "nested"]))
        data = {
            "cut": text[:cut].encode(),
            "garbage": draw(st.binary(max_size=30)),
            "bom": b"\xef\xbb\xbf" + text.encode(),
            "nested": b"[" * 50_000 + b"]" * 50_000,
        }[choice]
        return Broken(data, [f"text: {choice} at {cut}"])
    if kind == "spec":
        plan = json.loads(json.dumps(plan))
        i = draw(st.integers(0, len(plan["experiments"]) - 1))
        path = draw(st.sampled_from(sorted(SPEC_FIELDS)))
        value = draw(st.sampled_from(SPEC_FIELDS[path] + ODD_VALUES))
        node = plan["experiments"][i]
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
        rehash = draw(st.booleans())
        if rehash:  # a hand edit that also fixed the id: the spec's own checks must catch it
            node = plan["experiments"][i]
            node["id"] = ""
        edit = f"experiment {i}: {'.'.join(path)} = {value!r}" + (", id cleared" * rehash)
        return Broken(json.dumps(plan).encode(), [edit])
    mutated = draw(mutate_json(plan))
    return Broken(json.dumps(mutated).encode(), [f"mutated: {json.dumps(mutated)[:400]}"])


@fuzz_settings(40)
@given(data=st.data(), resume=st.booleans())
def test_train_a_broken_plan(capsys, mock_study, data, resume):
    """`train PLAN --preset mock` beside no results (fresh) or the study's (resuming)."""
    plan = json.loads((mock_study / "plan.json").read_text())
    broken = data.draw(broken_plans(plan))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "study"
        folder.mkdir()
        (folder / "plan.json").write_bytes(broken)
        if resume:
            (folder / "results.jsonl").write_bytes((mock_study / "results.jsonl").read_bytes())
        before = (folder / "results.jsonl").read_bytes() if resume else b""
        outcome = flops_fit(capsys, "-q", "train", folder / "plan.json", "--preset", "mock")
        assert_promise(outcome, what="train", said_before=True)
        assert (folder / "plan.json").read_bytes() == broken
        results = folder / "results.jsonl"
        if outcome.code == 2:  # refused: nothing trained
            assert (results.read_bytes() if results.exists() else b"") == before
        elif results.exists():  # trained: appended only
            assert results.read_bytes().startswith(before)


@fuzz_settings(8)
@given(data=st.data())
def test_run_over_a_broken_plan(capsys, mock_study, data):
    """`run` replans its directory: a broken plan.json left there is replaced, not read, and
    the results it resumes are kept."""
    plan = json.loads((mock_study / "plan.json").read_text())
    broken = data.draw(broken_plans(plan))
    with tempfile.TemporaryDirectory() as tmp:
        run = copy_study(mock_study, Path(tmp))
        (run / "plan.json").write_bytes(broken)
        results = (run / "results.jsonl").read_bytes()
        args = ["run", "--preset", "mock", "--out", run, *NO_FIGURES, "--set", "compare=[]"]
        outcome = flops_fit(capsys, "-q", *args)
        assert_promise(outcome, what="run", said_before=True)
        assert (run / "results.jsonl").read_bytes().startswith(results)


@fuzz_settings(20)
@given(data=st.data())
def test_plan_files_are_refused_where_a_fit_is_wanted(capsys, mock_study, data):
    """A plan (broken or not) given where a fit or results file is read: `predict`, `fit`."""
    plan = json.loads((mock_study / "plan.json").read_text())
    broken = data.draw(broken_plans(plan))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in" / "plan.json"
        path.parent.mkdir()
        path.write_bytes(broken)
        before = snapshot(path.parent)
        assert_promise(flops_fit(capsys, "predict", path, "--compute", "1e22"), what="predict")
        out = Path(tmp) / "fit.json"
        assert_promise(flops_fit(capsys, "-q", "fit", path, "-o", out), what="fit")
        assert snapshot(path.parent) == before
