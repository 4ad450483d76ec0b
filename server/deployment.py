"""A real Flower federation on this machine: SuperLink and SuperNodes as processes on
127.0.0.1, over TLS, with SuperNode authentication (``flower-superlink
--enable-supernode-auth``), every node registered with ``flwr supernode register``.

This is the documented deployment path, scripted: ``examples/local_federation`` uses it
to run an app's devices, and ``tests/test_deployment*.py`` to test it with real
processes. Each device is a SuperNode whose node config points at its SDK store
(``store-path``, ``fedrec.client.store.EventStore``); the run config names the shared item
catalogue and the number of devices. ``app="release"`` runs the statistics-release apps
instead (``flower_app.RELEASE``): each SuperNode's node config names its user
(``partition-id``) of the dataset the run config names (``tests/test_release_deployment.py``).
"""

from __future__ import annotations

import functools
import json
import os
import random
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from fedrec.server.certs import Credentials, make_credentials
from fedrec.shared import flower_app
from fedrec.shared.errors import FedrecError

FEDERATION = "local-deployment"
#: The Flower Apps a deployment can run: DP-FedAvg, or the statistics releases.
APPS = ("fedavg", "release")


def app_defaults(app: str) -> tuple[dict[str, str], dict[str, object]]:
    """(components, typed run-config defaults) of ``app``, one of :data:`APPS`: Flower
    accepts ``--run-config`` overrides only for keys the project's config names."""
    if app == "release":
        from fedrec.shared.release_config import ReleaseConfig
        return flower_app.RELEASE, ReleaseConfig().to_dict()
    if app == "fedavg":
        from fedrec.shared.config import RunConfig
        return flower_app.FEDAVG, RunConfig().to_flower()
    raise FedrecError(f"unknown deployment app {app!r}: one of {', '.join(APPS)}")


@dataclass
class Ports:
    """Loopback ports: ServerAppIo, Fleet (SuperNodes), Control (``flwr``), and the first
    of the SuperNodes' ClientAppIo ports (one each, counting up)."""

    serverappio: int = 9091
    fleet: int = 9092
    control: int = 9093
    clientappio: int = 9094

    @classmethod
    def free(cls, nodes: int, tries: int = 100) -> "Ports":
        """Ports no process on 127.0.0.1 holds now: 3 + ``nodes`` consecutive ones from a
        random base in [20000, 60000), so that two deployments (two test processes) can run
        at once. (Another process may still take one before the deployment binds it.)"""
        for _ in range(tries):
            base = random.randrange(20000, 60000 - 3 - nodes)
            if all(_port_free(p) for p in range(base, base + 3 + nodes)):
                return cls(base, base + 1, base + 2, base + 3)
        raise FedrecError(f"found no {3 + nodes} consecutive free ports on 127.0.0.1")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class LocalDeployment:
    """SuperLink + SuperNodes under ``root`` (credentials, database, logs).

    Use as a context manager: everything started is stopped on exit. ``app``: which of
    fedrec's Flower Apps :attr:`project` names (:data:`APPS`).
    """

    root: Path
    ports: Ports = field(default_factory=Ports)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    creds: Credentials | None = None
    app: str = "fedavg"

    def env(self) -> dict[str, str]:
        bindir = str(Path(sys.executable).parent)   # flower-superexec must be on PATH
        return flower_app.subprocess_env(     # (and a checkout's code on PYTHONPATH)
            PATH=bindir + os.pathsep + os.environ.get("PATH", ""),
            TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")

    def _exe(self, name: str) -> str:
        return str(Path(sys.executable).parent / name)

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = (self.root / f"{name}.log").open("a")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env(),
                                cwd=str(self.root), start_new_session=True)
        self.procs[name] = proc
        return proc

    def credentials(self, nodes: int) -> Credentials:
        self.creds = make_credentials(self.root / "certificates", nodes, force=True)
        return self.creds

    def start_superlink(self) -> subprocess.Popen:
        """SuperLink with TLS and SuperNode authentication; its state in a database file,
        so that a restarted SuperLink keeps its registered nodes and runs."""
        c = self.creds
        return self._start("superlink", [
            self._exe("flower-superlink"), "--ssl-ca-certfile", str(c.ca_cert),
            "--ssl-certfile", str(c.server_cert), "--ssl-keyfile", str(c.server_key),
            "--enable-supernode-auth", "--database", str(self.root / "superlink.db"),
            "--storage-dir", str(self.root / "storage"),
            "--serverappio-api-address", f"127.0.0.1:{self.ports.serverappio}",
            "--fleet-api-address", f"127.0.0.1:{self.ports.fleet}",
            "--control-api-address", f"127.0.0.1:{self.ports.control}"])

    def federation_config(self) -> str:
        """``flwr --federation-config``: where the Control API is, which CA to trust."""
        return (f"address='127.0.0.1:{self.ports.control}' "
                f"root-certificates='{self.creds.ca_cert}'")

    def flwr(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """A ``flwr`` CLI call against this deployment (from the app folder)."""
        return subprocess.run([self._exe("flwr"), *args], capture_output=True, text=True,
                              env=self.env(), cwd=str(self.root), timeout=timeout)

    @functools.cached_property
    def project(self) -> Path:
        """fedrec's Flower App for this deployment (``root/project``, written once, after
        :meth:`credentials`): a ``pyproject.toml`` naming the installed ServerApp and
        ClientApp of :attr:`app` (``shared.flower_app``; no source checkout needed), whose
        ``local-deployment`` federation points at this deployment, so ``flwr supernode``
        commands take no ``--federation-config``."""
        components, config = app_defaults(self.app)
        federations = {"default": FEDERATION, FEDERATION: {
            "address": f"127.0.0.1:{self.ports.control}",
            "root-certificates": str(self.creds.ca_cert)}}
        return flower_app.write_app(self.root / "project", flower_app.app_pyproject(
            "fedrec", components, config, federations))

    def register(self, index: int) -> None:
        """``flwr supernode register`` SuperNode ``index``'s public key: only registered
        keys may connect."""
        public_key = Path(str(self.creds.node_keys[index - 1]) + ".pub")
        project = str(self.project)
        said = ""
        for _ in range(30):   # the Control API takes a few seconds to come up; a call made
            try:              # while it starts can hang, so each call gets 30 s and a retry
                done = self.flwr("supernode", "register", str(public_key), project, FEDERATION,
                                 timeout=30)
            except subprocess.TimeoutExpired:
                said = "no answer within 30 s"
                continue
            said = done.stdout + done.stderr
            if "registered successfully" in done.stdout or "already in use" in said:
                return    # (already: an earlier call that hung got through after all)
            if "unavailable" not in done.stdout:
                break
            time.sleep(2)
        raise FedrecError(f"cannot register {public_key}: {said[-400:]}")

    def start_supernode(self, index: int, node_config: dict[str, object],
                        key: Path | None = None, tls: bool = True) -> subprocess.Popen:
        """SuperNode ``index`` (1-based) with its node config, authenticating with ``key``
        (default: its own registered key); ``tls=False`` tries plaintext, without a key
        unless one is given (Flower's SuperNode refuses a key over plaintext itself)."""
        config = " ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"
                          for k, v in node_config.items())
        args = [self._exe("flower-supernode"), "--superlink", f"127.0.0.1:{self.ports.fleet}",
                "--clientappio-api-address", f"127.0.0.1:{self.ports.clientappio + index - 1}",
                "--node-config", config, "--max-retries", "3", "--max-wait-time", "20"]
        args += (["--root-certificates", str(self.creds.ca_cert)] if tls else ["--insecure"])
        if tls or key is not None:   # Flower itself refuses a key over plaintext
            args += ["--auth-supernode-private-key", str(key or self.creds.node_keys[index - 1])]
        return self._start(f"supernode-{index}", args)

    def online_nodes(self) -> int | None:
        """SuperNodes the SuperLink lists as online (None: it could not be asked, e.g.
        while it starts)."""
        listed = self.flwr("supernode", "list", str(self.project), FEDERATION,
                           "--format", "json")
        start = listed.stdout.find("{")
        try:
            answer = json.loads(listed.stdout[start:]) if start >= 0 else {}
        except json.JSONDecodeError:
            return None
        if not answer.get("success"):
            return None
        return sum(node.get("status") == "online" for node in answer.get("nodes", []))

    def wait_online(self, count: int, timeout: float = 120) -> None:
        end = time.monotonic() + timeout
        while (found := self.online_nodes() or 0) < count:
            if time.monotonic() > end:
                raise FedrecError(f"only {found} of {count} SuperNodes online; see {self.root}")
            time.sleep(2)

    def run(self, run_config: dict[str, object], timeout: float = 900) -> subprocess.Popen:
        """``flwr run <project> local-deployment --stream`` with ``run_config`` (returns the
        process): Flower ships :attr:`project` (only its ``pyproject.toml``) as the app."""
        pairs = " ".join(f"{k}={v!r}" if isinstance(v, str) else
                         f"{k}={str(v).lower() if isinstance(v, bool) else v}"
                         for k, v in run_config.items())
        args = [self._exe("flwr"), "run", str(self.project), FEDERATION, "--stream",
                "--run-config", pairs,
                "--federation-config", self.federation_config()]
        log = (self.root / "flwr-run.log").open("a")
        log.write("$ " + shlex.join(args) + "\n")
        log.flush()
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env(),
                                cwd=str(self.project), start_new_session=True)
        self.procs["flwr-run"] = proc
        return proc

    def stop(self, name: str) -> None:
        """Kill a process and everything it started (its session)."""
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def __enter__(self) -> "LocalDeployment":
        self.root.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc) -> None:
        for name in list(self.procs):
            self.stop(name)
