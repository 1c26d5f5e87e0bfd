"""HTML convergence reports: which settings converge, how fast, how reliably.

The report reads only through the store's read API (``nnlab.store.Lab``); it never imports
the engine or the sweep runner. ``render_report`` returns the page, ``write_report`` writes it.
"""

from nnlab.report.text import mean_std
from nnlab.store.columns import METRICS

_PAGE = ("DEFAULT_DIRECTORY", "file_stem", "render_report", "report_path", "write_report")


def __getattr__(name: str):
    """The page loads on first use, with matplotlib, Jinja2 and pandas: the command line
    formats a sweep's best configurations with ``mean_std`` without them."""
    if name in _PAGE:
        from nnlab.report import page

        return getattr(page, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_DIRECTORY",
    "METRICS",
    "file_stem",
    "mean_std",
    "render_report",
    "report_path",
    "write_report",
]
