"""fedrec works installed from a wheel, in a directory that holds no checkout (issue #20, part 1).

The wheel is built from a copy of the tracked files (``pip wheel --no-deps
--no-build-isolation``: no network), installed into a fresh virtualenv that sees the
already-installed dependencies through a ``.pth`` line (the test interpreter's
site-packages) but neither the checkout nor the project's editable install (a ``.pth``
line adds a folder to ``sys.path``; the ``.pth`` files inside that folder, the editable
finder among them, are not run). Then, from an empty temporary directory: a 1-round
synthetic ``fedrec simulate``, ``fedrec audit`` on it, a DP popularity release, and an SDK
round trip; a deployment (SuperLink + 2 SuperNodes over TLS) whose Flower App is the
wheel's. Every step asserts that the code it ran is the wheel's.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

SDK = """
import json, sys
from fedrec.client import EventStore, Recommender
from fedrec.shared.catalogue import load_catalogue
from fedrec.shared.synthetic import SyntheticConfig, generate
import fedrec

world = generate(SyntheticConfig(n_users=12, n_items=30, seed=0))
world.items.to_csv("catalogue.csv", index=False)
catalogue = load_catalogue("catalogue.csv")
with EventStore("phone.db", user_id="alice") as store:
    for item in list(catalogue.item_ids)[:3]:
        store.record(item, "click", 1)
    recs = Recommender(store, catalogue, release=sys.argv[1]).recommend(k=5)
    print(json.dumps({"file": fedrec.__file__, "events": store.count(), "recs": recs}))
"""

#: Runs in the wheel's venv: a SuperLink and two SuperNodes (TLS, authenticated) started by
#: the installed fedrec, one round of DP-FedAvg over two SDK stores, on free ports.
DEPLOY = """
import json, sys
from pathlib import Path
import fedrec
from fedrec.client.store import EventStore
from fedrec.server.deployment import LocalDeployment, Ports
from fedrec.shared.synthetic import SyntheticConfig, generate

root = Path(sys.argv[1]).resolve()
root.mkdir()
data = generate(SyntheticConfig(n_users=2, n_items=40, seed=5))
data.items.to_csv(root / "catalogue.csv", index=False)
stores = []
for k, user in enumerate(dict.fromkeys(data.events["user_id"]), start=1):
    with EventStore(root / f"device-{k}.db") as store:
        for row in data.events[data.events["user_id"] == user].itertuples():
            store.record(row.item_id, row.event, int(row.timestamp))
    stores.append(root / f"device-{k}.db")
with LocalDeployment(root / "federation", Ports.free(2)) as fed:
    fed.credentials(2)
    fed.start_superlink()
    for i in (1, 2):
        fed.register(i)
        fed.start_supernode(i, {"store-path": str(stores[i - 1]), "device-index": i})
    fed.wait_online(2, timeout=300)
    proc = fed.run({"catalogue": str(root / "catalogue.csv"), "clients": 2, "rounds": 1,
                    "out": str(root / "run"), "dp": "server", "noise-multiplier": 0.3,
                    "clip": 1.0, "round-timeout": 300.0, "gmf-dim": 4, "mlp-dim": 4,
                    "content-dim": 4})
    code = proc.wait(timeout=900)
    app = (fed.project / "pyproject.toml").read_text()
print(json.dumps({"file": fedrec.__file__, "exit": code, "app": app,
                  "log": (root / "federation" / "flwr-run.log").read_text()[-3000:]}))
"""


def _tracked_copy(dest: Path) -> Path:
    """The tracked files of the checkout (no build/, egg-info or runs of its own)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / rel).is_file():
            shutil.copy2(ROOT / rel, target)
    return dest


def _venv(path: Path) -> Path:
    """A virtualenv whose python finds the test interpreter's packages, not fedrec, and
    Flower's commands in its own bin/ (as a real ``pip install`` of the wheel puts them)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], capture_output=True, text=True,
                             check=True).stdout.strip()
    deps = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    (Path(purelib) / "deps.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    from importlib.metadata import distribution

    for ep in distribution("flwr").entry_points.select(group="console_scripts"):
        module, _, attr = ep.value.partition(":")
        script = path / "bin" / ep.name
        script.write_text(f"#!{python}\nimport sys\nfrom {module} import {attr.split('.')[0]}\n"
                          f"sys.exit({attr}())\n")
        script.chmod(0o755)
    return python


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str], Path]:
    """(the new venv's python, an environment for it, an empty working directory)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = _tracked_copy(tmp / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp / "dist"), str(src)],
                   check=True, capture_output=True, cwd=tmp)
    wheel = next((tmp / "dist").glob("fedrec-*.whl"))
    python = _venv(tmp / "venv")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PATH=f"{tmp / 'venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}",
               TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore",
               FEDREC_DATA=str(tmp / "data"))
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--ignore-installed", str(wheel)], check=True, env=env, cwd=tmp)
    work = tmp / "work"
    work.mkdir()
    return python, env, work


def _run(installed, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    python, env, work = installed
    proc = subprocess.run(list(args), capture_output=True, text=True, env=env, cwd=work,
                          timeout=timeout)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


def test_the_wheel_installs_fedrec_and_no_bare_top_level_package(installed):
    python, _, work = installed
    code = ("import importlib.util as u, json, fedrec, fedrec.shared, fedrec.simulations\n"
            "print(json.dumps({'file': fedrec.__file__, 'shared': fedrec.shared.__file__,"
            " 'root': fedrec.SOURCE_ROOT, 'version': fedrec.__version__,"
            " 'bare': [n for n in ('shared', 'client', 'server', 'simulations')"
            " if u.find_spec(n)]}))")
    seen = json.loads(_run(installed, str(python), "-c", code).stdout)
    venv = python.parent.parent
    assert Path(seen["file"]).is_relative_to(venv) and Path(seen["shared"]).is_relative_to(venv)
    assert seen["root"] is None and seen["version"] == "0.1.0" and seen["bare"] == []
    configs = venv.glob("lib/python*/site-packages/fedrec/simulations/configs/*.toml")
    assert {p.name for p in configs} >= {"ml100k_tradeoff.toml", "release_tradeoff.toml"}
    assert not any(work.iterdir())


def test_simulate_audit_release_and_sdk_from_the_wheel(installed):
    python, _, work = installed
    fedrec = str(python.parent / "fedrec")
    small = ["--dataset", "synthetic", "--synthetic-users", "12", "--synthetic-items", "30"]
    _run(installed, fedrec, "simulate", *small, "--rounds", "1", "--clients-per-round", "5",
         "--no-reference", "--workers", "2", "--out", "run1")
    results = json.loads((work / "run1" / "results.json").read_text())
    assert results["rounds"] == 1
    app = (work / "run1" / "app" / "pyproject.toml").read_text()
    assert '"fedrec.server.app:app"' in app
    log = (work / "run1" / "simulation.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    _run(installed, fedrec, "audit", "run1")
    assert json.loads((work / "run1" / "audit.json").read_text())
    _run(installed, fedrec, "simulate", "--pipeline", "popularity", *small,
         "--target-epsilon", "8", "--no-reference", "--out", "pop")
    release = work / "pop" / "release.npz"
    assert release.exists()
    sdk = json.loads(_run(installed, str(python), "-c", SDK, str(release)).stdout)
    assert Path(sdk["file"]).is_relative_to(python.parent.parent)
    assert sdk["events"] == 3 and len(sdk["recs"]) == 5


def test_baseline_certs_and_a_bundled_sweep_from_the_wheel(installed):
    python, _, work = installed
    fedrec = str(python.parent / "fedrec")
    _run(installed, fedrec, "baseline", "--dataset", "synthetic", "--model", "popularity",
         "--out", "baselines.json")
    assert "popularity" in (work / "baselines.json").read_text()
    _run(installed, fedrec, "certs", "--out", "certificates", "--nodes", "1")
    assert (work / "certificates" / "ca.crt").exists()
    listed = _run(installed, fedrec, "sweep", "simulations/configs/synthetic_scale.toml",
                  "--out", "sweep", "--dry-run").stdout
    assert "seed" in listed or "cell" in listed.lower(), listed


def test_a_tls_deployment_runs_the_wheels_flower_app(installed):
    python, _, work = installed
    seen = json.loads(_run(installed, str(python), "-c", DEPLOY, "deploy", timeout=1200).stdout)
    assert Path(seen["file"]).is_relative_to(python.parent.parent)
    assert seen["exit"] == 0, seen["log"]
    assert '"fedrec.server.app:app"' in seen["app"]
    run = work / "deploy" / "run"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["clients_replied"] for r in rows] == [2]
    _run(installed, str(python.parent / "fedrec"), "audit", str(run))
    assert json.loads((run / "audit.json").read_text())["passed"] is True
