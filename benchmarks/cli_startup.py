"""How long the ``fedrec`` command takes to answer, per sub-command (best of N wall-clock).

Each command runs as ``python -m MODULE ...`` in a fresh process, as a user's shell runs
it; the table gives the best of ``--repeat`` wall-clock times (seconds) and whether
TensorFlow was imported (a separate, untimed run that checks ``sys.modules``). The inputs
are small and written here: a 3-row events CSV and a 4-round run directory built with the
same helper the audit tests use (``tests.test_audit._write_run``).

    PYTHONPATH=. python benchmarks/cli_startup.py                     # this tree's CLI
    PYTHONPATH=. python benchmarks/cli_startup.py --module shared.cli # the CLI before the move
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVENTS = "user_id,item_id,event,timestamp\nu1,i1,click,1\nu1,i2,purchase,2\nu2,i1,click,3\n"
#: Runs ``MODULE.main(argv)`` in-process, then prints whether TensorFlow got imported.
PROBE = ("import sys, io, contextlib, importlib\n"
         "m = importlib.import_module(sys.argv[1])\n"
         "with contextlib.redirect_stdout(io.StringIO()):\n"
         "    try:\n        m.main(sys.argv[2:])\n"
         "    except SystemExit:\n        pass\n"
         "print('tensorflow' in sys.modules)\n")


def commands(work: Path) -> dict[str, list[str]]:
    """Label -> argv of each timed command, on inputs made under ``work``."""
    events = work / "events.csv"
    events.write_text(EVENTS)
    run = work / "run"
    if not run.exists():
        subprocess.run([sys.executable, "-c",
                        "import sys; from pathlib import Path; from fedrec.shared.config import RunConfig;"
                        "from tests.test_audit import _write_run; out = Path(sys.argv[1]);"
                        "_write_run(out, RunConfig(out=str(out), dp='both', noise_multiplier=1.5,"
                        " clip=0.7, client_noise_multiplier=2.0, client_target_epsilon=120.0))",
                        str(run)], check=True, cwd=ROOT, env=_env())
    return {"--help": ["--help"],
            "simulate --help": ["simulate", "--help"],
            "data validate FILE": ["data", "validate", str(events)],
            "audit RUN": ["audit", str(run)],
            "certs --out DIR": ["certs", "--out", str(work / "certs"), "--force"]}


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path, TF_CPP_MIN_LOG_LEVEL="3")


def best_of(argv: list[str], repeat: int) -> tuple[float, int]:
    """Smallest wall-clock seconds of ``repeat`` runs of ``python argv``, and the exit
    code of the last run (a command that fails fast is no speed-up)."""
    times, code = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        code = subprocess.run([sys.executable, *argv], cwd=ROOT, env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        times.append(time.perf_counter() - start)
    return min(times), code


def imports_tensorflow(module: str, argv: list[str]) -> bool:
    out = subprocess.run([sys.executable, "-c", PROBE, module, *argv], cwd=ROOT, env=_env(),
                         capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1:] == ["True"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", default="fedrec.simulations.cli", help="the CLI's module")
    parser.add_argument("--repeat", type=int, default=3, help="runs per command (best counts)")
    args = parser.parse_args()
    baseline = best_of(["-c", "pass"], args.repeat)[0]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [(label, *best_of(["-m", args.module, *argv], args.repeat),
                 imports_tensorflow(args.module, argv))
                for label, argv in commands(Path(tmp)).items()]
    print(f"fedrec CLI start-up, module {args.module}, best of {args.repeat} "
          f"(bare `python -c pass`: {baseline:.2f} s)")
    print(f"| {'command':<20} | seconds | exit | imports tensorflow |")
    print(f"|{'-' * 22}|---------|------|--------------------|")
    for label, seconds, code, tf in rows:
        print(f"| {label:<20} | {seconds:7.2f} | {code:4d} | {'yes' if tf else 'no':<18} |")


if __name__ == "__main__":
    main()
