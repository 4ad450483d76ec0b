"""Peak memory of a simulation: Flower's process, Ray and its workers, together.

Scale runs promise memory bounded by the clients of a round, so every simulation
measures what it used. The measure is the sum over the process tree of each process's
proportional set size (PSS: shared pages split among the processes sharing them, so
TensorFlow's libraries, mapped by every worker, count once), sampled about once a
second; RSS where PSS is unavailable (non-Linux).
"""

from __future__ import annotations

import psutil


class PeakMemory:
    """Samples the memory of ``pid`` and all its descendants; keeps the peak (MiB)."""

    def __init__(self, pid: int) -> None:
        self._root = psutil.Process(pid)
        self.peak_mb = 0.0
        self.measure = "pss"

    def sample(self) -> float:
        """Current memory of the tree in MiB (0 once the root has exited)."""
        try:
            procs = [self._root, *self._root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0
        for proc in procs:
            try:
                total += self._bytes(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue   # a process that ended between listing and reading
        now = total / 2**20
        self.peak_mb = max(self.peak_mb, now)
        return now

    def _bytes(self, proc: psutil.Process) -> int:
        if self.measure == "pss":
            try:
                return proc.memory_full_info().pss
            except (AttributeError, psutil.AccessDenied):
                self.measure = "rss"
        return proc.memory_info().rss
