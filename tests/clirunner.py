"""Run the real `flops-fit` entry point in-process and capture what a user would see."""

from __future__ import annotations

import json
from dataclasses import dataclass

from flops_fit_core.cli import main


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


def flops_fit(capsys, *args: str) -> Outcome:
    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)
