"""HTML convergence reports: which settings converge, how fast, how reliably.

The report reads only through the store's read API (``nnlab.store.Lab``); it never imports
the engine or the sweep runner. ``render_report`` returns the page, ``write_report`` writes it.
"""

from nnlab.report.analysis import METRICS
from nnlab.report.page import (
    DEFAULT_DIRECTORY,
    file_stem,
    mean_std,
    render_report,
    report_path,
    write_report,
)

__all__ = [
    "DEFAULT_DIRECTORY",
    "METRICS",
    "file_stem",
    "mean_std",
    "render_report",
    "report_path",
    "write_report",
]
