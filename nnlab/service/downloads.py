"""A sweep's runs and epochs as CSV files to download, and the headers that name them.

A spreadsheet runs a cell that begins with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage
return, which some strip first) as a formula: a sweep named ``=HYPERLINK(…)`` could run one on
the machine of whoever opens the file. Text cells that begin so get a leading ``'``, which
spreadsheets show as text; number columns are left as they are, so ``-0.5`` stays a number.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pandas as pd

from nnlab.report import file_stem
from nnlab.store import Lab

FORMULA_START = re.compile(r"[=+\-@\t\r]")
RUNS_PER_CHUNK = 100  # the epochs of this many runs are read and sent at a time
CSV_TYPE = "text/csv; charset=utf-8"


def csv_text(frame: pd.DataFrame, header: bool = True) -> str:
    """``frame`` as CSV text, its text cells made safe to open in a spreadsheet."""
    return defused(frame).to_csv(index=False, header=header, lineterminator="\r\n")


def defused(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells that a spreadsheet would run as a formula begin
    with ``'``."""
    frame = frame.copy()
    for column in frame.columns:
        if pd.api.types.is_object_dtype(frame[column]) or pd.api.types.is_string_dtype(
            frame[column]
        ):
            text = frame[column].astype("string")
            risky = text.str.match(FORMULA_START).fillna(False).astype(bool)
            frame[column] = text.mask(risky, "'" + text)
    return frame


def runs_csv(lab: Lab, sweep: str) -> str:
    """The runs of ``sweep`` (``Lab.runs``), one row each. Raises ``UnknownSweepError``."""
    return csv_text(lab.runs(sweep=sweep))


def run_ids(lab: Lab, sweep: str) -> list[int]:
    """The ids of the runs of ``sweep``, in order. Raises ``UnknownSweepError``."""
    return [int(run_id) for run_id in lab.runs(sweep=sweep).run_id]


def epochs_csv(lab: Lab, sweep: str, runs: list[int]) -> Iterator[str]:
    """Every epoch of the ``runs`` of ``sweep`` (``Lab.epochs``) as CSV text, the header
    first, then the epochs of ``RUNS_PER_CHUNK`` runs at a time: a sweep of 10,000 runs of
    100 epochs is never one string in memory."""
    yield csv_text(lab.epochs(sweep=sweep, runs=[]))
    for start in range(0, len(runs), RUNS_PER_CHUNK):
        chunk = lab.epochs(sweep=sweep, runs=runs[start : start + RUNS_PER_CHUNK])
        if len(chunk):
            yield csv_text(chunk, header=False)


def attachment(sweep: str, suffix: str) -> dict[str, str]:
    """The Content-Disposition header of a download about ``sweep``, named by its file stem
    (never the raw name, which may hold quotes, slashes or markup): ``quickstart-runs.csv``."""
    return {"Content-Disposition": f'attachment; filename="{file_stem(sweep)}-{suffix}"'}
