"""`fedrec simulate --ray-address` on a real Ray cluster: a head and a worker node started
as separate processes on this machine, 1 CPU each.

The slow test runs the same 2-round simulation on the cluster and on a local Ray, and
checks that clients ran on both cluster nodes (``simulation-nodes.json``) and that every
number equals the local run's. Teardown ends exactly the processes the fixture started
(and their descendants), never ``ray stop``, which would end every Ray of this user.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import psutil
import pytest
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict

from fedrec.server.rundir import RunDir
from fedrec.server.simnodes import SIMULATION_NODES, NodeLog, read_nodes
from fedrec.shared.runinfo import RAY_NODE_ID, SIMULATION_NODE_KEY

ROOT = Path(__file__).resolve().parent.parent
RAY = Path(sys.executable).parent / "ray"
#: Seconds a node may take to come up on a busy 2-core machine.
START_TIMEOUT = 120
TINY = ["--dataset", "synthetic", "--synthetic-users", "12", "--synthetic-items", "60",
        "--dim", "8", "--clients-per-round", "4", "--eval-clients", "4", "--rounds", "2",
        "--seed", "5", "--no-reference"]
#: Fields of a metrics line that measure time, not the model.
TIMING = {"wall_seconds", "client_compute_seconds", "orchestration_seconds"}


# ----- the client names its Ray node; the server counts and takes the record off -----

class _FakeRay(SimpleNamespace):
    def is_initialized(self) -> bool:
        return True

    def get_runtime_context(self):
        return SimpleNamespace(get_node_id=lambda: "node-a")


def _query(monkeypatch, ray) -> Message:
    from fedrec.client.app import app

    if ray is None:
        monkeypatch.delitem(sys.modules, "ray", raising=False)
    else:
        monkeypatch.setitem(sys.modules, "ray", ray)
    msg = Message(RecordDict(), dst_node_id=1, message_type="query")
    ctx = Context(run_id=1, node_id=1, node_config={"partition-id": 3}, state=RecordDict(),
                  run_config={})
    return app(msg, ctx)


def test_a_client_in_a_ray_worker_names_its_node_and_elsewhere_nothing(monkeypatch):
    reply = _query(monkeypatch, _FakeRay())
    assert reply.content[SIMULATION_NODE_KEY][RAY_NODE_ID] == "node-a"
    assert int(reply.content["metrics"]["position"]) == 3
    assert SIMULATION_NODE_KEY not in _query(monkeypatch, None).content   # a deployed device


class _Grid:
    """Replies to every message from the node named in ``nodes`` (in turn)."""

    def __init__(self, nodes: list[str | None]) -> None:
        self.nodes = nodes
        self.run = "passed through"

    def send_and_receive(self, messages, *, timeout=None):
        replies = []
        for msg, node in zip(messages, self.nodes):
            content = {"metrics": MetricRecord({"num-examples": 1})}
            if node is not None:
                content[SIMULATION_NODE_KEY] = ConfigRecord({RAY_NODE_ID: node})
            replies.append(Message(RecordDict(content), reply_to=msg))
        return replies


def _messages(kind: str, rnd: int | None, n: int) -> list[Message]:
    content = RecordDict({} if rnd is None else {"config": ConfigRecord({"server-round": rnd})})
    return [Message(content, dst_node_id=i + 1, message_type=kind) for i in range(n)]


def test_node_log_counts_replies_per_node_and_takes_the_record_off(tmp_path):
    path = tmp_path / SIMULATION_NODES
    grid = NodeLog(_Grid(["b", "a", "b", None]), path)
    assert grid.run == "passed through"
    grid.send_and_receive(_messages("query", None, 2))
    replies = grid.send_and_receive(_messages("train", 1, 4))
    assert all(SIMULATION_NODE_KEY not in r.content for r in replies)   # the strategy's view
    grid.send_and_receive(_messages("evaluate", 1, 3))
    NodeLog(_Grid(["a"]), path).send_and_receive(_messages("train", 2, 1))   # a resumed run
    record = read_nodes(tmp_path)
    assert record["nodes"] == ["b", "a"]
    assert record["rounds"] == {"0": {"query": {"b": 1, "a": 1}},
                                "1": {"train": {"b": 2, "a": 1}, "evaluate": {"b": 2, "a": 1}},
                                "2": {"train": {"a": 1}}}
    NodeLog(_Grid([None]), tmp_path / "other.json").send_and_receive(_messages("train", 1, 1))
    assert not (tmp_path / "other.json").exists()   # no Ray, no file


# ----- a real cluster -----

def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports free right now (all held open until all are picked)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    bindir = str(Path(sys.executable).parent)
    env.update(PATH=bindir + os.pathsep + env.get("PATH", ""), TF_CPP_MIN_LOG_LEVEL="3",
               RAY_USAGE_STATS_ENABLED="0", **extra)
    return env


@dataclass
class Cluster:
    address: str
    temp_dir: Path
    procs: list[subprocess.Popen]


def _start_node(args: list[str], temp: Path, name: str) -> subprocess.Popen:
    """``ray start ... --block`` in a session of its own; returns once the node is up."""
    ports = _free_ports(5)
    cmd = [str(RAY), "start", "--block", "--num-cpus", "1", "--temp-dir", str(temp),
           "--object-store-memory", str(200 * 2**20), "--disable-usage-stats",
           "--dashboard-agent-listen-port", str(ports[0]),
           "--dashboard-agent-grpc-port", str(ports[1]),
           "--runtime-env-agent-port", str(ports[2]), "--metrics-export-port", str(ports[3]),
           *args]
    log = temp / f"{name}.log"
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=_env(),
                            start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while "Ray runtime started" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop([proc])
            pytest.fail(f"ray {name} did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.5)
    return proc


def _stop(procs: list[subprocess.Popen]) -> None:
    """End the ``ray start`` processes we started and every process below them (GCS,
    raylets, workers, agents): SIGTERM, then SIGKILL after 15 s. Only these PIDs."""
    tree = []
    for proc in procs:
        try:
            root = psutil.Process(proc.pid)
            tree += [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    for p in tree:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(tree, timeout=15)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    for proc in procs:   # anything left in their own sessions' process groups
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()


@pytest.fixture(scope="module")
def cluster():
    if not RAY.exists():
        pytest.skip(f"no ray executable next to {sys.executable}")
    # a short folder: Ray's unix socket paths below it must stay under 108 characters
    temp = Path(tempfile.mkdtemp(prefix="fedrec-ray-", dir="/tmp"))
    port, client_port, dashboard_port = _free_ports(3)
    procs: list[subprocess.Popen] = []
    try:
        procs.append(_start_node(["--head", "--port", str(port), "--include-dashboard", "false",
                                  "--dashboard-port", str(dashboard_port),
                                  "--ray-client-server-port", str(client_port)], temp, "head"))
        address = f"127.0.0.1:{port}"
        procs.append(_start_node(["--address", address], temp, "worker"))
        yield Cluster(address, temp, procs)
    finally:
        _stop(procs)
        shutil.rmtree(temp, ignore_errors=True)


def _simulate(out: Path, *extra: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fedrec.simulations.cli", "simulate", *TINY,
                             "--out", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=ROOT)


def _finish(proc: subprocess.Popen) -> None:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]


@pytest.mark.slow
def test_simulate_on_a_ray_cluster_uses_both_nodes_and_equals_a_local_run(cluster, tmp_path):
    # both at once (the machine has 2 cores); the local run sees RAY_ADDRESS pointing at
    # the cluster and must still start its own Ray, with --workers 2
    remote = _simulate(tmp_path / "cluster", "--ray-address", cluster.address, env=_env())
    local = _simulate(tmp_path / "local", "--workers", "2", env=_env(RAY_ADDRESS=cluster.address))
    _finish(remote)
    _finish(local)

    on_cluster, on_local = read_nodes(tmp_path / "cluster"), read_nodes(tmp_path / "local")
    for rnd in ("1", "2"):
        for kind in ("train", "evaluate"):
            assert sum(on_cluster["rounds"][rnd][kind].values()) == 4, (rnd, kind)
    assert sum(on_cluster["rounds"]["0"]["query"].values()) == 12   # one query per client
    ran = {node for kinds in on_cluster["rounds"].values() for counts in kinds.values()
           for node, n in counts.items() if n > 0}
    assert len(ran) == 2 and set(on_cluster["nodes"]) == ran   # clients ran on both nodes
    assert len(on_local["nodes"]) == 1 and not set(on_local["nodes"]) & ran

    a, b = RunDir(tmp_path / "cluster"), RunDir(tmp_path / "local")
    rows_a = [{k: v for k, v in r.items() if k not in TIMING} for r in a.read_metrics()]
    rows_b = [{k: v for k, v in r.items() if k not in TIMING} for r in b.read_metrics()]
    assert [r["round"] for r in rows_a] == [1, 2]
    assert rows_a == rows_b                               # exactly: order-independent sums
    wa, _ = a.load_checkpoint(2)
    wb, _ = b.load_checkpoint(2)
    assert all(np.array_equal(wa[k], wb[k]) for k in wa) and wa.keys() == wb.keys()
    ra, rb = (json.loads(r.results_path.read_text()) for r in (a, b))
    assert ra["metrics"] == rb["metrics"]
    assert cluster.address in ra["resources"]["memory_measure"]
    assert "cluster" not in rb["resources"]["memory_measure"]
