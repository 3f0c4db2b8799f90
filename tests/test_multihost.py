"""Multi-host training on one machine: ``launch.py`` as 2 processes x 4 CPU devices (JAX's CPU
collectives, gloo, between the processes) against 1 process x 8 devices, and a kill -9 of both
processes mid-run followed by a restart; plus ``distributed.plan``'s flag and cluster handling.

The smoke config is trained with SGD here, not its Adam: the two runs all-reduce the gradients in a
different order (in-process vs gloo), so they differ by float rounding (~1e-7), and Adam's first
updates are ``lr * g / |g|`` per element, which turns rounding noise in a near-zero gradient into a
full ``lr``-sized step (measured: 4e-3 after 6 steps). SGD keeps rounding at rounding size, so the
1e-6 tolerance still catches any difference in the examples, their augmentation or their order.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from flax import traverse_util

from aesthetics_jax.train import checkpointing, distributed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOTAL, CKPT = 9, 3
OVERRIDES = ["--config.optimizer=sgd", f"--config.total_steps={TOTAL}", f"--config.ckpt_every={CKPT}",
             "--config.eval_every=0", "--config.evals.test.plots=False"]
TIMEOUT = 900  # seconds per run: compiling on a loaded 2-core box is slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(workdir, data_dir, processes: int, tag: str) -> list[tuple[subprocess.Popen, str]]:
    """Starts ``processes`` launch.py processes (8 // processes CPU devices each); returns
    ``[(process, log path)]``."""
    env = {**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu", "EPATH_USE_TF": "false",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={8 // processes}"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # process 0 alone writes it: the others would lag behind
    cmd = [sys.executable, os.path.join(REPO, "launch.py"), "--config", os.path.join(REPO, "configs/nima_demo.py:smoke"),
           "--workdir", str(workdir), f"--config.data.data_dir={data_dir}", *OVERRIDES]
    if processes > 1:
        cmd += ["--coordinator", f"localhost:{_free_port()}", "--num_processes", str(processes)]
    procs = []
    for p in range(processes):
        log = os.path.join(os.path.dirname(str(workdir)), f"{tag}_{p}.log")
        with open(log, "w") as f:
            procs.append((subprocess.Popen(cmd + (["--process_id", str(p)] if processes > 1 else []), cwd=REPO,
                                           env=env, stdout=f, stderr=subprocess.STDOUT), log))
    return procs


def _tail(log: str, n: int = 60) -> str:
    lines = [l for l in open(log).read().splitlines() if not l.startswith("[Gloo]")]
    return f"--- {log} (last {n} lines) ---\n" + "\n".join(lines[-n:])


def _wait(procs):
    deadline = time.time() + TIMEOUT
    try:
        for proc, _ in procs:
            proc.wait(timeout=max(deadline - time.time(), 1))
    except subprocess.TimeoutExpired:
        for proc, _ in procs:
            proc.kill()
        pytest.fail("launch.py timed out\n" + "\n".join(_tail(log) for _, log in procs))
    if any(proc.returncode for proc, _ in procs):
        pytest.fail(f"launch.py failed (exit codes {[p.returncode for p, _ in procs]})\n"
                    + "\n".join(_tail(log) for _, log in procs))


def _params(workdir) -> dict:
    return traverse_util.flatten_dict(checkpointing.restore_params(os.path.join(workdir, "checkpoints")))


def _assert_params_close(got, want, atol):
    assert got.keys() == want.keys()
    worst = max(float(np.max(np.abs(np.asarray(got[k]) - np.asarray(want[k])))) for k in want)
    assert worst <= atol, f"largest parameter difference {worst:.3g} > {atol}"


def _final_metrics(workdir) -> dict:
    return json.load(open(os.path.join(workdir, "eval", "final_metrics.json")))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The 1 x 8 reference (it also builds the demo data) and the uninterrupted 2 x 4 run."""
    root = tmp_path_factory.mktemp("multihost")
    data_dir = str(root / "data")
    one, two = root / "one", root / "two"
    _wait(_launch(one, data_dir, 1, "one"))
    two_procs = _launch(two, data_dir, 2, "two")
    _wait(two_procs)
    return dict(root=root, data_dir=data_dir, one=str(one), two=str(two), two_logs=[log for _, log in two_procs])


@pytest.mark.slow  # 4 launch.py runs (6 processes) compiling on CPU: minutes
def test_two_processes_train_like_one(runs):
    _assert_params_close(_params(runs["two"]), _params(runs["one"]), atol=1e-6)
    want, got = _final_metrics(runs["one"]), _final_metrics(runs["two"])
    assert got.keys() == want.keys() and got["step"] == TOTAL
    for key in want:  # NaN (e.g. an SRCC of constant smoke predictions) must be NaN in both
        np.testing.assert_allclose(np.float64(got[key] if got[key] is not None else np.nan),
                                   np.float64(want[key] if want[key] is not None else np.nan),
                                   rtol=1e-5, atol=1e-6, err_msg=key)
    # Every test example evaluated once, in the same order as with one process.
    rows = lambda w: open(os.path.join(w, "eval", "test_predictions.csv")).read().splitlines()  # noqa: E731
    assert [r.split(",")[0] for r in rows(runs["two"])] == [r.split(",")[0] for r in rows(runs["one"])]
    # Each process saved its own data iterator position; progress lines come from process 0 only.
    data = os.path.join(runs["two"], "checkpoints", str(TOTAL), "data")
    assert sorted(os.listdir(data)) == ["process_0-of-2.json", "process_1-of-2.json"]
    out0, out1 = (open(log).read() for log in runs["two_logs"])
    assert f"step {TOTAL}/{TOTAL}" in out0 and "artefacts:" in out0
    assert not [l for l in out1.splitlines() if l.startswith(("step ", "artefacts:", "resuming"))]


@pytest.mark.slow  # 4 launch.py runs (6 processes) compiling on CPU: minutes
def test_killed_processes_resume_to_the_same_parameters(runs):
    workdir = runs["root"] / "killed"
    ckpt = os.path.join(workdir, "checkpoints", str(CKPT))
    procs = _launch(workdir, runs["data_dir"], 2, "killed")
    deadline = time.time() + TIMEOUT
    while not os.path.isdir(ckpt):  # Orbax renames the finished checkpoint into place
        if time.time() > deadline or any(p.poll() is not None for p, _ in procs):
            for p, _ in procs:
                p.kill()
            pytest.fail(f"no checkpoint {ckpt} while both processes ran\n" + "\n".join(_tail(log) for _, log in procs))
        time.sleep(0.05)
    assert all(p.poll() is None for p, _ in procs), "a process finished before it could be killed"
    for p, _ in procs:
        os.kill(p.pid, signal.SIGKILL)
    assert [p.wait(timeout=60) for p, _ in procs] == [-signal.SIGKILL] * 2
    assert not os.path.exists(os.path.join(workdir, "eval", "final_metrics.json"))

    restarted = _launch(workdir, runs["data_dir"], 2, "restarted")  # the same command, a new port
    _wait(restarted)
    out0 = open(restarted[0][1]).read()
    resumed_from = [int(l.split()[-1]) for l in out0.splitlines() if l.startswith("resuming from step")]
    assert resumed_from and CKPT <= resumed_from[0] < TOTAL, _tail(restarted[0][1])
    _assert_params_close(_params(workdir), _params(runs["two"]), atol=1e-6)


@pytest.fixture
def no_cluster(monkeypatch):
    for key in list(os.environ):
        if key.startswith(("SLURM_", "OMPI_", "JAX_COORDINATOR", "TPU_", "MEGASCALE_")) or key == "KUBERNETES_SERVICE_HOST":
            monkeypatch.delenv(key)
    return monkeypatch


def test_initialize_without_flags_or_cluster_is_a_no_op(no_cluster):
    assert distributed.plan() is None
    assert distributed.initialize() is None
    import jax

    assert not jax.distributed.is_initialized()


@pytest.mark.parametrize("kwargs, message", [
    (dict(process_id=1), "--process_id given without --coordinator, --num_processes"),
    (dict(coordinator="localhost:1234", num_processes=2), "without --process_id"),
    (dict(coordinator="localhost", num_processes=2, process_id=0), "host:port"),
    (dict(coordinator="localhost:1234", num_processes=2, process_id=2), "in [0, 2)"),
    (dict(coordinator="localhost:1234", num_processes=0, process_id=0), "positive integer"),
    (dict(local_device_ids=[0]), "--local_device_ids applies to multi-process runs"),
])
def test_partial_or_invalid_flags_are_errors(no_cluster, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        distributed.plan(**kwargs)


def test_explicit_flags(no_cluster):
    assert distributed.plan("10.0.0.1:8476", 4, 3, [0, 1]) == dict(
        how="explicit", coordinator_address="10.0.0.1:8476", num_processes=4, process_id=3,
        local_device_ids=[0, 1], cluster_detection_method="deactivate")


def _slurm(monkeypatch, tasks, nodes, procid=1):
    for key, value in dict(SLURM_JOB_ID="4242", SLURM_STEP_NODELIST="gpu[07-08]", SLURM_NTASKS=str(tasks),
                           SLURM_PROCID=str(procid), SLURM_LOCALID="0", SLURM_STEP_NUM_NODES=str(nodes)).items():
        monkeypatch.setenv(key, value)


def test_slurm_is_detected(no_cluster):
    _slurm(no_cluster, tasks=2, nodes=2)  # one task per node: every GPU of the node, explicit parameters
    plan = distributed.plan()
    assert plan["how"].startswith("auto: SLURM, one task per node")
    assert plan["coordinator_address"].startswith("gpu07:") and plan["num_processes"] == 2
    assert plan["process_id"] == 1 and plan["local_device_ids"] is None
    _slurm(no_cluster, tasks=16, nodes=2)  # one task per GPU: JAX's own detection (GPU = SLURM_LOCALID)
    assert distributed.plan() == dict(how="auto: SlurmCluster", local_device_ids=None)
    _slurm(no_cluster, tasks=1, nodes=1, procid=0)  # one task (e.g. interactive srun): a single process
    assert distributed.plan() is None
