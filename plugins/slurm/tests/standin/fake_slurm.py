"""A stand-in Slurm for tests: `sbatch`, `srun`, `sacct`, `scancel` and `scontrol` as the
`slurm` executor (through submitit) calls them, on this machine.

Each command is a wrapper on PATH that runs `python fake_slurm.py COMMAND ARGS...`. Every call
is recorded in `$FAKE_SLURM_DIR/calls.jsonl`. `sbatch` reads the script's `#SBATCH` lines,
gives the job an id and starts a scheduler process that runs the array's tasks (at most the
`%N` of `--array` at once), each as `bash SCRIPT` with the SLURM_* variables a real task has,
in a session of its own. `scancel` cancels (SIGTERM, then SIGKILL a second later) or signals
tasks; `scontrol requeue` marks a task to run again when it exits, as Slurm does for a task
submitit requeues; `sacct` reports the states. `fake_slurm.py node-fail JOB_TASK` kills a task
as a failed node would. Every process it starts carries FAKE_SLURM_DIR in its environment,
by which the tests find and stop them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

STATE = Path(os.environ.get("FAKE_SLURM_DIR", "/nonexistent"))
COMMANDS = ("sbatch", "srun", "sacct", "scancel", "scontrol")


@contextlib.contextmanager
def _locked():
    with (STATE / "lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _job_file(array_id: str) -> Path:
    return STATE / "jobs" / f"{array_id}.json"


def _read(array_id: str) -> dict | None:
    try:
        return json.loads(_job_file(array_id).read_text())
    except FileNotFoundError:
        return None


def _write(job: dict) -> None:
    path = _job_file(job["array_id"])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(job))
    tmp.replace(path)


def _update(array_id: str, change) -> dict | None:
    with _locked():
        job = _read(array_id)
        if job is not None:
            change(job)
            _write(job)
        return job


def _record(command: str, args: list[str]) -> None:
    with _locked(), (STATE / "calls.jsonl").open("a") as fh:
        fh.write(json.dumps({"command": command, "args": args, "time": time.time()}) + "\n")


def _targets(ids: list[str]) -> list[tuple[str, str | None]]:
    """`123` -> (123, None): every task; `123_4` -> (123, "4")."""
    out = []
    for item in ids:
        array_id, _, index = item.partition("_")
        out.append((array_id, index or None))
    return out


# -- the commands ---------------------------------------------------------------------------


def sbatch(args: list[str]) -> int:
    script = Path(args[-1])
    options = {}
    for line in script.read_text().splitlines():
        match = re.match(r"#SBATCH --([a-z-]+)(?:=(.*))?$", line.strip())
        if match:
            options[match[1]] = (match[2] or "").strip("'")
    if options.get("partition") == "nonexistent":
        print("sbatch: error: invalid partition specified: nonexistent", file=sys.stderr)
        print("sbatch: error: Batch job submission failed: Invalid partition name", file=sys.stderr)
        return 1
    with _locked():
        counter = STATE / "next_id"
        array_id = int(counter.read_text()) if counter.exists() else 1000
        counter.write_text(str(array_id + 1))
    size, parallel, is_array = 1, 1, "array" in options
    if is_array:
        match = re.fullmatch(r"0-(\d+)(?:%(\d+))?", options["array"])
        if not match:
            print(
                f"sbatch: error: Invalid --array specification {options['array']}", file=sys.stderr
            )
            return 1
        size = int(match[1]) + 1
        parallel = int(match[2] or size)
    job = {
        "array_id": str(array_id),
        "script": str(script.resolve()),
        "options": options,
        "is_array": is_array,
        "parallel": parallel,
        "tasks": {
            str(i): {"state": "PENDING", "restarts": 0, "flags": [], "pid": None, "step": None}
            for i in range(size)
        },
    }
    with _locked():
        _write(job)
    log = (STATE / f"scheduler-{array_id}.log").open("a")
    subprocess.Popen(  # runs on after sbatch returns, as a real array does
        [sys.executable, __file__, "_schedule", str(array_id)],
        start_new_session=True,
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
    )
    print(f"Submitted batch job {array_id}")
    return 0


def _expand(path: str, env: dict[str, str]) -> str:
    return (
        path.replace("%A", env.get("SLURM_ARRAY_JOB_ID", env["SLURM_JOB_ID"]))
        .replace("%a", env.get("SLURM_ARRAY_TASK_ID", "0"))
        .replace("%j", env["SLURM_JOB_ID"])
        .replace("%t", "0")
    )


def schedule(array_id: str) -> int:
    """Run the array's tasks, `parallel` at once; requeue, cancel and fail them as marked."""
    running: dict[str, subprocess.Popen] = {}
    while True:
        job = _read(array_id)
        tasks = job["tasks"]
        for index, proc in list(running.items()):
            code = proc.poll()
            if code is None:
                continue
            del running[index]

            def ended(job, index=index, code=code):
                task = job["tasks"][index]
                flags = task["flags"]
                if "node_fail" in flags:
                    task["state"] = "NODE_FAIL"
                elif "cancel" in flags:
                    task["state"] = "CANCELLED"
                elif "requeue" in flags:
                    task["state"] = "PENDING"
                    task["restarts"] += 1
                else:
                    task["state"] = "COMPLETED" if code == 0 else "FAILED"
                task["flags"], task["pid"], task["step"] = [], None, None

            job = _update(array_id, ended)
            tasks = job["tasks"]
        pending = [i for i, t in tasks.items() if t["state"] == "PENDING" and i not in running]
        for index in sorted(pending, key=int)[: max(0, job["parallel"] - len(running))]:
            env = dict(os.environ)
            task = tasks[index]
            env.update(
                SLURM_JOB_ID=f"{array_id}{int(index):03d}" if job["is_array"] else array_id,
                SLURM_NTASKS="1",
                SLURM_JOB_NUM_NODES="1",
                SLURM_NODEID="0",
                SLURM_PROCID="0",
                SLURM_LOCALID="0",
                SLURM_JOB_NODELIST=f"fake-node-{index}",
                SLURM_RESTART_COUNT=str(task["restarts"]),
                SLURM_JOB_PARTITION=job["options"].get("partition", "fake"),
            )
            if job["is_array"]:
                env.update(SLURM_ARRAY_JOB_ID=array_id, SLURM_ARRAY_TASK_ID=index)
            out = _expand(job["options"].get("output", str(STATE / "%j.out")), env)
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            with open(out, "a") as log:
                proc = subprocess.Popen(
                    ["bash", job["script"]],
                    env=env,
                    stdout=log,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            running[index] = proc

            def started(job, index=index, pid=proc.pid):
                job["tasks"][index].update(state="RUNNING", pid=pid)

            job = _update(array_id, started)
            tasks = job["tasks"]
        if not running and not any(t["state"] == "PENDING" for t in tasks.values()):
            return 0
        time.sleep(0.05)


def srun(args: list[str]) -> int:
    """Run the step in this process (exec): its pid is the task's step, for signals."""
    out = err = None
    rest = list(args)
    while rest and rest[0].startswith("--"):
        flag = rest.pop(0)
        if flag in ("--output", "--error"):
            value = rest.pop(0)
            out, err = (value, err) if flag == "--output" else (out, value)
    env = dict(os.environ)
    array_id = env.get("SLURM_ARRAY_JOB_ID", env["SLURM_JOB_ID"])
    index = env.get("SLURM_ARRAY_TASK_ID", "0")

    def step(job):
        job["tasks"][index]["step"] = os.getpid()

    _update(array_id, step)
    for path, fd in ((out, 1), (err, 2)):
        if path:
            target = os.open(_expand(path, env), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(target, fd)
    os.execvp(rest[0], rest)
    return 127  # pragma: no cover


def _ranges(indexes: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5", as Slurm writes array indexes."""
    parts, start = [], None
    for i, index in enumerate(indexes):
        if start is None:
            start = index
        if i + 1 == len(indexes) or indexes[i + 1] != index + 1:
            parts.append(str(start) if start == index else f"{start}-{index}")
            start = None
    return ",".join(parts)


def sacct(args: list[str]) -> int:
    """As Slurm prints it: a line per task that started (and its `.batch` step), and the
    tasks still pending of an array on one line, `ID_[2-8%2]`."""
    ids = [args[i + 1] for i, a in enumerate(args) if a == "-j"]
    lines = ["JobID|State|NodeList"]
    for array_id, _ in _targets(ids):
        job = _read(array_id)
        if job is None:
            continue
        tasks = sorted(job["tasks"].items(), key=lambda kv: int(kv[0]))
        pending = [int(i) for i, task in tasks if task["state"] == "PENDING"]
        for index, task in tasks:
            if task["state"] == "PENDING" and job["is_array"]:
                continue
            name = f"{array_id}_{index}" if job["is_array"] else array_id
            node = f"fake-node-{index}" if task["state"] != "PENDING" else "None assigned"
            state = "CANCELLED by 0" if task["state"] == "CANCELLED" else task["state"]
            lines.append(f"{name}|{state}|{node}")
            if task["state"] != "PENDING":
                lines.append(f"{name}.batch|{task['state']}|{node}")
        if pending and job["is_array"]:
            ranges = f"{array_id}_[{_ranges(pending)}%{job['parallel']}]"
            lines.append(f"{ranges}|PENDING|None assigned")
    print("\n".join(lines))
    return 0


def _kill_group(pid: int | None, signum: int) -> None:
    if pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signum)


def scancel(args: list[str]) -> int:
    only_pending = any(a.lower() in ("--state=pending", "--state=pd") for a in args)
    signame = None
    ids = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--signal":
            signame = rest.pop(0)
        elif arg.startswith("--signal="):
            signame = arg.split("=", 1)[1]
        elif not arg.startswith("-"):
            ids.append(arg)
    to_kill = []
    for array_id, index in _targets(ids):

        def change(job, index=index):
            for i, task in job["tasks"].items():
                if index is not None and i != index:
                    continue
                if signame is not None:
                    if task["state"] == "RUNNING" and task["step"]:
                        name = signame if signame.startswith("SIG") else f"SIG{signame}"
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(task["step"], getattr(signal, name))
                elif task["state"] == "PENDING":
                    task["state"] = "CANCELLED"
                elif task["state"] == "RUNNING" and not only_pending:
                    task["flags"].append("cancel")
                    to_kill.append(task["pid"])

        _update(array_id, change)
    for pid in to_kill:
        _kill_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + 1.0
    while to_kill and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in to_kill:
        _kill_group(pid, signal.SIGKILL)
    return 0


def scontrol(args: list[str]) -> int:
    if args[:1] != ["requeue"]:
        print(f"scontrol: stand-in supports only 'requeue', not {args}", file=sys.stderr)
        return 1
    for array_id, index in _targets(args[1:]):

        def change(job, index=index):
            for i, task in job["tasks"].items():
                if (index is None or i == index) and task["state"] == "RUNNING":
                    task["flags"].append("requeue")

        _update(array_id, change)
    return 0


def node_fail(args: list[str]) -> int:
    """Test-only: the node under a running task fails (its processes vanish)."""
    pids = []
    for array_id, index in _targets(args):

        def change(job, index=index):
            for i, task in job["tasks"].items():
                if (index is None or i == index) and task["state"] == "RUNNING":
                    task["flags"].append("node_fail")
                    pids.append(task["pid"])

        _update(array_id, change)
    for pid in pids:
        _kill_group(pid, signal.SIGKILL)
    return 0 if pids else 1


def main(argv: list[str]) -> int:
    command, args = argv[0], argv[1:]
    if command == "_schedule":
        return schedule(args[0])
    if command == "node-fail":
        return node_fail(args)
    _record(command, args)
    return {
        "sbatch": sbatch,
        "srun": srun,
        "sacct": sacct,
        "scancel": scancel,
        "scontrol": scontrol,
    }[command](args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
