"""The Ray task that trains one experiment (imported by `map`, never at start-up)."""

from __future__ import annotations

import ray

from flops_fit_core import train_on_worker


@ray.remote
def train_task(trainer, spec, run_dir, checkpoint_root, cancel, threads):
    """One experiment on a Ray worker: the core's `run_one`, so a trainer that raises is a
    `failed` result, never a Ray retry (retries are for dead workers and nodes)."""
    return train_on_worker(
        trainer,
        spec,
        run_dir=run_dir,
        checkpoint_root=checkpoint_root,
        cancel=cancel,
        threads=threads,
    )
