"""Progress bars (rich) for long work, and the logging set-up the CLI uses."""

from __future__ import annotations

import logging
import sys

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

#: Progress, logs and messages go to stderr; result tables to stdout (``report``), wide
#: enough when stdout is a file or a CI log rather than a terminal.
console = Console(stderr=True)
report = Console(width=None if sys.stdout.isatty() else 160)


def setup_logging(verbose: bool = False) -> None:
    """Route ``fedrec.*`` logs through rich on stderr (INFO, or DEBUG with ``verbose``)."""
    handler = RichHandler(console=console, show_path=False, show_time=False, markup=False)
    root = logging.getLogger("fedrec")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


def run_progress() -> Progress:
    """A bar per task with its status line and ETA (rounds of a run, cells of a sweep)."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=console, transient=False)


class TrainingProgress:
    """A rich progress bar whose tasks Keras callbacks can drive (one task per epoch)."""

    def __init__(self, description: str = "training", enabled: bool | None = None) -> None:
        self.description = description
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                  MofNCompleteColumn(), TimeElapsedColumn(),
                                  TimeRemainingColumn(), console=console, transient=True,
                                  disable=not self.enabled)
        self._epoch = 0

    def __enter__(self) -> "TrainingProgress":
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    def keras_callback(self, steps: int):
        """A Keras callback that advances a fresh bar over ``steps`` batches."""
        import tensorflow as tf

        self._epoch += 1
        task = self._progress.add_task(f"{self.description} epoch {self._epoch}", total=steps)
        progress = self._progress

        class _Callback(tf.keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                progress.advance(task)

            def on_train_end(self, logs=None):
                progress.remove_task(task)

        return _Callback()
