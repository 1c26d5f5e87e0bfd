"""How a sweep shows its progress: a rich bar on a terminal (done/total, running, failed,
diverged, time left), one line per finished run when the output is piped, or nothing."""

from __future__ import annotations

import sys
from collections import Counter

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from nnlab.checks import plural


class SweepProgress:
    """Progress of one sweep; ``workers``: how many runs train at once (None when unknown, on
    a Dask cluster). Pass its methods to ``run_sweep`` as ``on_start``, ``on_result`` and
    ``on_wait``."""

    def __init__(self, shown: bool, workers: int | None) -> None:
        self.shown, self.workers, self.counts, self.total = shown, workers, Counter(), 0
        self.task = None
        self.waiting_message = None
        self.bar = None
        if shown and sys.stdout.isatty():
            columns = (
                TextColumn("[bold]sweep"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[tally]}"),
                TimeRemainingColumn(),
            )
            self.bar = Progress(*columns)

    def __enter__(self) -> SweepProgress:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def start(self, more: int) -> None:
        """``more`` runs are about to train (a sweep may add some later: runs taken over)."""
        self.total += more
        if self.bar is None:
            return
        if self.task is None:
            self.task = self.bar.add_task("runs", total=self.total, tally=self._tally(0))
        else:
            self.bar.update(self.task, total=self.total)

    def waiting(self, held) -> None:
        """Runs another runner holds: say which, and that they are waited for."""
        holders = ", ".join(sorted({run.holder for run in held}))
        message = (
            f"waiting for {plural(len(held), 'run')} held by another runner "
            f"({holders}); they are trained here if it stops beating"
        )
        if self.shown and message != self.waiting_message:
            self.waiting_message = message
            self._say(message)

    def finished(self, run_id: int, status: str) -> None:
        self.counts[status] += 1
        done = sum(self.counts.values())
        if self.bar is not None:
            self.bar.update(self.task, completed=done, tally=self._tally(done))
        elif self.shown:
            self._say(f"[{done}/{self.total}] run {run_id}: {status}")

    def _tally(self, done: int) -> str:
        counts = Counter(self.counts)
        if self.workers is not None:
            counts["running"] = min(self.workers, self.total - done)
        shown = ("running", "failed", "diverged")
        return ", ".join(f"{counts[status]} {status}" for status in shown if counts[status])

    def _say(self, message: str) -> None:
        if self.bar is not None:
            self.bar.console.print(message)
        else:
            print(message, flush=True)
