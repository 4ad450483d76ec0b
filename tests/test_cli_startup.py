"""`fedrec` answers at once: the commands that need no model never import TensorFlow.

Each command runs in a fresh interpreter (``fedrec.simulations.cli.main`` in-process there), which
then reports its exit code and whether ``tensorflow`` is in ``sys.modules``. And the CLI
sits on top of the layers: nothing in ``shared/`` imports ``client``, ``server`` or
``simulations``.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import contextlib, io, sys
from fedrec.simulations.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        code = main(sys.argv[1:])
    except SystemExit as stop:
        code = stop.code
print("probe", code, "tensorflow" in sys.modules)
"""


def fresh_fedrec(*argv: str) -> tuple[int, bool]:
    """Run ``fedrec argv`` in a new interpreter: (exit code, tensorflow imported)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=300)
    last = proc.stdout.strip().splitlines()[-1:]
    assert last and last[0].startswith("probe "), proc.stdout + proc.stderr
    _, code, tf = last[0].split()
    return int(code), tf == "True"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 4-round run with user- and example-level DP, as the audit tests write it."""
    from fedrec.shared.config import RunConfig
    from tests.test_audit import _write_run

    out = tmp_path_factory.mktemp("startup") / "run"
    return _write_run(out, RunConfig(out=str(out), dp="both", noise_multiplier=1.5, clip=0.7,
                                     client_noise_multiplier=2.0, client_target_epsilon=120.0))


@pytest.mark.parametrize("argv", [["--help"], ["simulate", "--help"], ["baseline", "--help"],
                                  ["sweep", "--help"], ["audit", "--help"]],
                         ids=lambda a: " ".join(a))
def test_help_does_not_import_tensorflow(argv):
    assert fresh_fedrec(*argv) == (0, False)


def test_data_validate_does_not_import_tensorflow(tmp_path):
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,event,timestamp\nu1,i1,click,1\nu2,i1,purchase,2\n")
    assert fresh_fedrec("data", "validate", str(events)) == (0, False)


@pytest.mark.inprocess
def test_audit_without_empirical_does_not_import_tensorflow(run_dir):
    (run_dir / "audit.json").unlink(missing_ok=True)
    assert fresh_fedrec("audit", str(run_dir)) == (0, False)
    assert (run_dir / "audit.json").exists()                # it did audit the run


def test_certs_does_not_import_tensorflow(tmp_path):
    assert fresh_fedrec("certs", "--out", str(tmp_path / "c"), "--nodes", "1") == (0, False)
    assert (tmp_path / "c" / "ca.crt").exists() and (tmp_path / "c" / "node-1.pub").exists()


def test_baseline_help_lists_the_baselines_it_runs():
    from fedrec.simulations.baselines import MODELS
    from fedrec.simulations.cli_args import BASELINE_MODELS

    assert BASELINE_MODELS == MODELS


def _layer(dotted: str) -> str:
    """``fedrec.server.dp`` -> ``server``; any other module -> its top-level name."""
    parts = dotted.split(".")
    return parts[1] if parts[0] == "fedrec" and len(parts) > 1 else parts[0]


def _imported(path: Path) -> set[str]:
    """Our layers (and other top-level packages) a module imports, anywhere in it."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {_layer(a.name) for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(_layer(node.module))
            if node.module == "fedrec":
                names |= {a.name for a in node.names}
    return names


def test_shared_imports_nothing_above_it():
    above = {"client", "server", "simulations"}
    offenders = {p.name: sorted(_imported(p) & above) for p in (ROOT / "shared").glob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_importing_fedrec_and_its_sdk_package_does_not_import_tensorflow():
    """``fedrec`` and ``fedrec.client`` name the SDK lazily: only using ``Recommender``
    loads TensorFlow."""
    code = ("import sys, fedrec, fedrec.client\n"
            "a = 'tensorflow' in sys.modules\n"
            "from fedrec.client import EventStore\n"
            "b = 'tensorflow' in sys.modules\n"
            "print('probe', a, b, fedrec.EventStore is EventStore, fedrec.__version__)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)
    assert proc.stdout.split()[-5:] == ["probe", "False", "False", "True", "0.1.0"], proc.stderr


def test_importing_fedrec_sets_the_tensorflow_log_level_once():
    """The TensorFlow environment is set in one place, ``fedrec/__init__.py``, which every
    module of the code base is imported through (no per-module ``os.environ`` lines)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    probe = "import os, fedrec.shared.errors; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env=env, cwd=Path(__file__).resolve().parents[1], check=True)
    assert out.stdout.strip() == "3"
    env["TF_CPP_MIN_LOG_LEVEL"] = "0"                 # a user's own setting wins
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env=env, cwd=Path(__file__).resolve().parents[1], check=True)
    assert out.stdout.strip() == "0"
    root = Path(__file__).resolve().parents[1]
    setters = [p for d in ("shared", "client", "server", "simulations")
               for p in (root / d).glob("*.py")
               if 'os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL"' in p.read_text()]
    assert setters == []
