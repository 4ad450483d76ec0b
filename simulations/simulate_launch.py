"""Launch a federated training run through Flower's simulation engine and follow it.

The run is launched with Flower's own ``flower-simulation`` (Ray backend, one virtual
SuperNode per user) on this project's app; this process follows the run directory's
``metrics.jsonl`` for a progress bar until the simulation exits. ``fedrec simulate``
(:mod:`fedrec.simulations.simulate_cmd`) and ``fedrec sweep`` share :func:`execute`.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import tomli_w
from rich.progress import Progress

from fedrec.server.dp import check_settings
from fedrec.server.rundir import RunDir
from fedrec.shared import flower_app
from fedrec.shared.config import RunConfig
from fedrec.shared.errors import FedrecError
from fedrec.simulations.memory import PeakMemory
from fedrec.simulations.progress import console, run_progress
from fedrec.simulations.simulate_post import add_ledger_summary, add_resources


def backend_config(workers: int, ray_address: str | None = None) -> dict:
    """Flower's simulation backend config: ``workers`` parallel clients on a local Ray,
    or every client on the existing Ray cluster at ``ray_address`` (``ray.init(address=...)``,
    e.g. ``127.0.0.1:6379``, ``auto`` or ``ray://head:10001``); one CPU per client either way.

    A local run says ``address = "local"``: without an address ``ray.init`` joins the
    cluster named by ``RAY_ADDRESS`` or by the last ``ray start`` on this machine
    (``/tmp/ray/ray_current_cluster``), where it fails on ``num_cpus`` (a cluster's
    resources are its own); "local" always starts a private Ray of ``workers`` CPUs.
    """
    init: dict = {"log-to-driver": False}
    if ray_address:
        init["address"] = ray_address
    else:
        init.update({"address": "local", "num-cpus": max(1, workers)})
    return {"client-resources": {"num-cpus": 1, "num-gpus": 0.0}, "init-args": init}


def app_pyproject(n_nodes: int) -> dict:
    """fedrec's DP-FedAvg Flower App (``shared.flower_app``): the components and typed
    run-config defaults of the checkout's own ``pyproject.toml``, ``n_nodes`` SuperNodes."""
    return flower_app.app_pyproject(
        "fedrec", flower_app.FEDAVG, RunConfig().to_flower(),
        {"default": "local-simulation",
         "local-simulation": {"options": {"num-supernodes": n_nodes}}})


def launch(cfg: RunConfig, n_nodes: int, workers: int,
           ray_address: str | None = None) -> subprocess.Popen:
    """Start ``flower-simulation`` on fedrec's app with ``cfg`` as the run config and
    ``n_nodes`` simulation nodes (SuperNodes).

    The app folder is ``<out>/app`` (a ``pyproject.toml`` naming the installed
    ``fedrec.server.app`` and ``fedrec.client.app``), so no source checkout is needed;
    ``cfg`` travels as ``<out>/run_config.toml`` (``--run-config``)."""
    exe = flower_app.flower_exe("flower-simulation")
    out = Path(cfg.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    run_config = out / "run_config.toml"
    run_config.write_text(tomli_w.dumps(cfg.to_flower()))
    app = flower_app.write_app(out / "app", app_pyproject(n_nodes))
    backend = backend_config(workers, ray_address)
    env = flower_app.subprocess_env(TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    log = (out / "simulation.log").open("a")
    return subprocess.Popen(
        [exe, "--app", str(app), "--num-supernodes", str(n_nodes),
         "--run-config", str(run_config), "--backend-config", json.dumps(backend)],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(app))


def round_status(rows: list[dict]) -> str:
    """One line about the newest round: HR@10 (or loss) and ε so far."""
    if not rows:
        return "starting"
    last = rows[-1]
    hr, loss = last.get("hr@10"), last.get("train_loss")
    status = (f"HR@10 {hr:.3f}" if hr is not None else
              f"loss {loss:.3f}" if loss is not None else f"round {last['round']}")
    if last.get("epsilon") is not None:
        status += f"  ε user {last['epsilon']:.2f}"
    if last.get("client_epsilon_max") is not None:
        status += f"  ε example ≤ {last['client_epsilon_max']:.2f}"
    return status


#: A simulation that has written nothing at all after this long never started: Ray's
#: start-up forks while Flower's ServerApp thread already runs, and the fork can hang.
STARTUP_TIMEOUT = 300.0


class StartupHang(Exception):
    """flower-simulation wrote nothing within STARTUP_TIMEOUT seconds."""


def follow(proc: subprocess.Popen, run: RunDir, cfg: RunConfig, bar: Progress | None = None,
           label: str = "rounds") -> float:
    """Progress over rounds from metrics.jsonl until the simulation exits: a bar of its
    own, or a task on the caller's ``bar`` that goes when the run ends. Returns the peak
    memory (MiB) of this command and everything it started (``fedrec.simulations.memory``).
    Raises StartupHang (after killing it) when the simulation never starts."""
    memory = PeakMemory(os.getpid())
    if bar is None:
        with run_progress() as own:
            _watch(proc, run, cfg, own, own.add_task(label, total=cfg.rounds, status="starting"),
                   memory)
        return memory.peak_mb
    task = bar.add_task(label, total=cfg.rounds, status="starting")
    try:
        _watch(proc, run, cfg, bar, task, memory)
    finally:
        bar.remove_task(task)
    return memory.peak_mb


def _watch(proc: subprocess.Popen, run: RunDir, cfg: RunConfig, bar: Progress, task,
           memory: PeakMemory) -> None:
    log, started = run.path / "simulation.log", time.monotonic()
    size0 = log.stat().st_size if log.exists() else 0
    while proc.poll() is None:
        memory.sample()
        rows = run.read_metrics()
        bar.update(task, completed=len(rows), status=round_status(rows))
        if (time.monotonic() - started > STARTUP_TIMEOUT and log.exists()
                and log.stat().st_size == size0):
            proc.kill()
            proc.wait()
            raise StartupHang(f"flower-simulation wrote nothing in {STARTUP_TIMEOUT:.0f} s")
        time.sleep(1.0)
    bar.update(task, completed=len(run.read_metrics()))


def execute(cfg: RunConfig, workers: int, ray_address: str | None = None,
            bar: Progress | None = None, label: str = "rounds") -> dict:
    """Run ``cfg`` (or resume it when ``cfg.resume``) to the end, write its TensorBoard
    events; return results.json.

    Raises ConfigError for settings that cannot work, FedrecError when the simulation
    fails, KeyboardInterrupt (after stopping the simulation) on Ctrl-C.
    """
    from fedrec.shared.federated_data import federation_of
    from fedrec.simulations.tensorboard import write_events

    run_dir = RunDir(cfg.out)
    fed = federation_of(cfg)
    clients = fed.n_clients + cfg.canaries
    check_settings(cfg, clients, fed.train_sizes().tolist() if cfg.client_dp else [])
    if cfg.lazy_clients:   # simulation nodes are slots that act for the users sampled
        from fedrec.server.slots import slots_needed

        nodes = slots_needed(cfg, clients)
    else:
        nodes = clients
    peak_mb = 0.0
    for attempt in (1, 2):
        proc = launch(cfg, nodes, workers, ray_address)
        try:
            peak_mb = max(peak_mb, follow(proc, run_dir, cfg, bar, label))
            break
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait()
            raise
        except StartupHang as hang:
            if attempt == 2:
                raise FedrecError(f"{cfg.out}: {hang}, twice; see its simulation.log") from None
            console.print(f"{hang}; starting it again")
            cfg = cfg.replace(resume=run_dir.manifest_path.exists())
    if proc.returncode != 0 or not run_dir.results_path.exists():
        raise FedrecError(f"simulation failed (exit {proc.returncode}); see {cfg.out}/simulation.log")
    if cfg.client_dp:
        add_ledger_summary(run_dir, cfg)
    write_events(cfg.out)
    return add_resources(run_dir, peak_mb, nodes, ray_address)
