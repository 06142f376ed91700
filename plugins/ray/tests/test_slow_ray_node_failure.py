"""A node removed mid-task (`ray.cluster_utils.Cluster`: a head and two worker nodes, each a
real raylet on this machine): Ray reruns the task on the other node, from its checkpoint
folder, and the sweep ends with exactly one `ok` result per experiment. Slow: starting three
raylets takes tens of seconds (`uv run pytest -m slow plugins/ray`)."""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from flops_fit_core import RunResult, Trainer
from flops_fit_core.testing import tiny_specs
from flops_fit_ray import RayExecutor

pytestmark = pytest.mark.slow


class OnNode(Trainer):
    """Takes `seconds`, noting the node of each attempt in `run_dir/nodes/<id>`."""

    name = "on-node"

    def train(self, spec, context):
        import ray

        node = ray.get_runtime_context().get_node_id()
        folder = Path(context.run_dir) / "nodes"
        folder.mkdir(exist_ok=True)
        with (folder / spec.id).open("a") as out:
            out.write(node + "\n")
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            context.check_cancelled()
            time.sleep(0.05)
        return RunResult.success(spec, self.info, loss=1.0, tokens_trained=spec.tokens)


def test_a_node_removed_mid_task_reruns_it_elsewhere(tmp_path, monkeypatch):
    import cloudpickle

    from flops_fit_ray.executor import import_ray

    ray = import_ray()  # first: it turns Ray's `uv run` hook off before Ray is imported
    from ray.cluster_utils import Cluster

    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    temp = tempfile.mkdtemp(prefix="ffrayn")  # short: Ray's sockets live under it
    monkeypatch.setenv("RAY_TMPDIR", temp)  # every node's files, and Ray's address file
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,  # the driver's node trains nothing
            "include_dashboard": False,
            "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3},
        },
    )
    try:
        victim = cluster.add_node(num_cpus=1)
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        specs = tiny_specs(3)
        delivered: list[RunResult] = []
        sweep = threading.Thread(
            target=RayExecutor({"infra_retries": 2}).map,
            args=(OnNode(), specs, delivered.append),
            kwargs={"run_dir": tmp_path},
        )
        sweep.start()
        nodes = tmp_path / "nodes"
        deadline = time.monotonic() + 120
        on_victim = []
        while not on_victim:
            assert time.monotonic() < deadline, "no task started on the victim node"
            on_victim = (
                [p.name for p in nodes.glob("*") if victim.node_id in p.read_text().split()]
                if nodes.exists()
                else []
            )
            time.sleep(0.05)
        cluster.remove_node(victim)
        sweep.join(180)
        assert not sweep.is_alive()
        assert sorted(r.experiment_id for r in delivered) == sorted(s.id for s in specs)
        assert all(r.status == "ok" for r in delivered), [r.error for r in delivered]
        (moved,) = on_victim
        attempts = (nodes / moved).read_text().split()
        assert attempts[0] == victim.node_id and attempts[-1] != victim.node_id
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
        cloudpickle.unregister_pickle_by_value(module)
