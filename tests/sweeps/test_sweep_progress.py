"""A sweep's progress: what the bar's tally says, and the lines a piped sweep prints."""

from __future__ import annotations

from nnlab.sweeps.progress import SweepProgress


def test_sweep_progress_counts_running_failed_and_diverged():
    progress = SweepProgress(shown=False, workers=2)
    progress.start(5)
    for run_id, status in enumerate(["completed", "failed", "diverged", "completed"]):
        progress.finished(run_id, status)
    assert progress._tally(4) == "1 running, 1 failed, 1 diverged"  # one run left, one worker busy
    assert SweepProgress(shown=False, workers=None)._tally(0) == ""  # a cluster: not known


def test_piped_progress_prints_a_line_per_run_and_what_it_waits_for(capsys):
    progress = SweepProgress(shown=True, workers=1)  # pytest's stdout is not a terminal
    progress.start(2)
    progress.finished(7, "completed")
    progress.start(1)  # a run taken over later
    progress.finished(8, "diverged")
    assert capsys.readouterr().out.splitlines() == [
        "[1/2] run 7: completed",
        "[2/3] run 8: diverged",
    ]
