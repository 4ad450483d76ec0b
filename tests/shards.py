"""Run the whole test suite as a few concurrent pytest processes (``make test``).

Why: most of the end-to-end tier's wall time is waiting (process start-ups, heartbeats,
timeouts), so on a 2-core machine one pytest process leaves about a third of the CPU
idle. The suite is split by test *file* (a module-scoped fixture, such as the
deployment's federation, stays in one process) into ``--shards`` groups balanced by
recorded seconds (longest-processing-time-first), and the groups run at the same time,
each with its own ``--basetemp``. Nothing is deselected: the union of the shards is
every test file, run with the same markers as ``pytest`` alone.

Seconds per file come from ``tests/durations.json`` (committed; measured with the command
below), overridden by what the last run recorded in ``.pytest_cache/fedrec-durations.json``
(each shard's JUnit XML; only a run without extra pytest arguments records). A file
with no record counts :data:`DEFAULT_SECONDS`.

Usage: ``python tests/shards.py [--shards K] [--record tests/durations.json] [-- PYTEST ARGS]``.
Exit status: 0 when every shard passed, else 1; a failing shard's log tail is printed.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
BASELINE = TESTS / "durations.json"
CACHE = ROOT / ".pytest_cache" / "fedrec-durations.json"
#: Seconds assumed for a test file with no record.
DEFAULT_SECONDS = 10.0
#: Lines of a failing shard's log printed.
TAIL = 60
#: pytest's exit status when a shard's files hold no selected test (``-m``/``-k``).
NO_TESTS = 5
#: Slowest tests listed at the end (from the shards' JUnit XML).
SLOWEST = 15


def test_files() -> list[str]:
    return sorted(f"tests/{p.name}" for p in TESTS.glob("test_*.py"))


def recorded_seconds() -> dict[str, float]:
    """Seconds per test file: the committed baseline, then the last run's record."""
    seconds: dict[str, float] = {}
    for path in (BASELINE, CACHE):
        if path.exists():
            seconds.update(json.loads(path.read_text()))
    return seconds


def balance(files: list[str], seconds: dict[str, float], shards: int) -> list[list[str]]:
    """Longest file first onto the shard with the least work so far (LPT): no shard
    ends more than the longest single file after the best possible split."""
    heap = [(0.0, k) for k in range(shards)]
    groups: list[list[str]] = [[] for _ in range(shards)]
    for f in sorted(files, key=lambda f: (-seconds.get(f, DEFAULT_SECONDS), f)):
        load, k = heapq.heappop(heap)
        groups[k].append(f)
        heapq.heappush(heap, (load + seconds.get(f, DEFAULT_SECONDS), k))
    return [sorted(g) for g in groups if g]


def junit_cases(xml: Path) -> list[tuple[str, str, float]]:
    """(test file, test name, seconds with setup and teardown) of each test case in one
    shard's JUnit XML; nothing when the file is missing."""
    if not xml.exists():
        return []
    out = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        module = case.get("classname", "").split(".")
        name = next((f"tests/{m}.py" for m in module if m.startswith("test_")), None)
        if name is not None:
            out.append((name, case.get("name", ""), float(case.get("time", 0.0))))
    return out


def junit_seconds(xml: Path) -> dict[str, float]:
    """Seconds per test file in one shard's JUnit XML."""
    out: dict[str, float] = defaultdict(float)
    for name, _, seconds in junit_cases(xml):
        out[name] += seconds
    return dict(out)


def summary_line(log: Path) -> str:
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


def run(shards: int, extra: list[str], record: Path | None) -> int:
    files = test_files()
    groups = balance(files, recorded_seconds(), shards)
    work = Path(tempfile.mkdtemp(prefix="fedrec-tests-"))
    procs = []
    start = time.monotonic()
    for k, group in enumerate(groups):
        log = work / f"shard-{k}.log"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               f"--basetemp={work / f'tmp-{k}'}", f"--junitxml={work / f'shard-{k}.xml'}",
               *extra, *group]
        print(f"shard {k}: {len(group)} files: {' '.join(Path(g).stem for g in group)}",
              flush=True)
        procs.append((k, log, subprocess.Popen(cmd, cwd=ROOT,
                                               stdout=log.open("w"), stderr=subprocess.STDOUT)))
    failed = []
    for k, log, proc in procs:
        code = proc.wait()
        minutes = (time.monotonic() - start) / 60
        print(f"shard {k} done at {minutes:.1f} min (exit {code}): {summary_line(log)}", flush=True)
        if code not in (0, NO_TESTS):
            failed.append((k, log))
    seconds: dict[str, float] = {}
    cases = []
    for k, _, _ in procs:
        seconds.update(junit_seconds(work / f"shard-{k}.xml"))
        cases += junit_cases(work / f"shard-{k}.xml")
    print(f"slowest {SLOWEST} tests (setup + call + teardown):")
    for name, test, secs in sorted(cases, key=lambda c: -c[2])[:SLOWEST]:
        print(f"  {secs:7.1f}s {name}::{test}")
    if seconds and not extra:             # a filtered run would under-count its files
        CACHE.parent.mkdir(exist_ok=True)
        CACHE.write_text(json.dumps(dict(sorted(seconds.items())), indent=1) + "\n")
        if record is not None:
            record.write_text(json.dumps({f: round(s, 1) for f, s in sorted(seconds.items())},
                                         indent=1) + "\n")
    for k, log in failed:
        print(f"\n===== shard {k} failed; last {TAIL} lines of {log} =====")
        print("\n".join(log.read_text(errors="replace").splitlines()[-TAIL:]))
    total = (time.monotonic() - start) / 60
    print(f"{len(groups)} shards, {len(files)} test files, {total:.1f} min; "
          f"{'FAILED: shard ' + ', '.join(str(k) for k, _ in failed) if failed else 'all passed'}"
          f" (logs: {work})")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=int(os.environ.get("SHARDS", 4)),
                        help="concurrent pytest processes (default 4, or $SHARDS)")
    parser.add_argument("--record", type=Path, default=None,
                        help="also write the measured seconds per file here "
                             "(tests/durations.json to refresh the baseline)")
    args = parser.parse_args(own)
    if args.shards < 1:
        parser.error("--shards must be at least 1")
    return run(args.shards, extra, args.record)


if __name__ == "__main__":
    sys.exit(main())
