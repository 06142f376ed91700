"""The job ledger: which cluster job trains which experiments, kept in the run directory.

A sweep on Slurm outlives its driver: the driver can be killed, or its login session end,
while the array runs on. `slurm/jobs.jsonl` in the run directory says, for every job the
driver submitted, its id, the folder submitit writes its results to, and the experiments it
trains, so that the next `flops-fit train` re-attaches to those jobs (collecting what they
finished, waiting for what runs) instead of submitting them again. The file is append-only,
one record a line, flushed and fsynced before the driver moves on; a torn last line (a
driver killed mid-write) is skipped.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from flops_fit_core import InputError, OutputError

__all__ = ["LEDGER", "JobRecord", "Ledger"]

#: The ledger's place in the run directory.
LEDGER = Path("slurm") / "jobs.jsonl"


@dataclass(frozen=True)
class JobRecord:
    """One submitted job (one array task, or one job of the local cluster)."""

    job_id: str
    #: `slurm` or `local`: a job of one is never re-attached by the other.
    cluster: str
    #: submitit's folder for this job: its pickles, result and logs.
    folder: str
    #: The experiments this job trains, in order.
    experiments: list[str]
    #: The trainer and the digest of its options: a job of other options is not re-attached.
    trainer: str
    options_digest: str | None
    #: 0 for the first submission of these experiments, 1 for the first retry, ...
    attempt: int = 0
    submitted_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    #: Set on a second record of the same job once the driver is done with it (`collected`,
    #: `cancelled`, `died: NODE_FAIL`, ...): such a job is never re-attached.
    ended: str | None = None
    schema_version: int = 1


class Ledger:
    """`slurm/jobs.jsonl` of one run directory."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LEDGER

    def read(self) -> list[JobRecord]:
        """Every complete record, oldest first; lines that do not parse are skipped."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise InputError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        records = []
        for line in text.splitlines():
            try:
                records.append(JobRecord(**json.loads(line)))
            except (ValueError, TypeError):
                continue  # a torn last line, or a record of a later layout
        return records

    def append(self, records: list[JobRecord]) -> None:
        if not records:
            return
        data = "".join(json.dumps(asdict(r), sort_keys=True) + "\n" for r in records)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from None
