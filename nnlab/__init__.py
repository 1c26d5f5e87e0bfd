"""nnlab: run grids of small neural-network training experiments and study their convergence.

    import nnlab

    result = nnlab.sweep("sweeps/quickstart.yaml", jobs=2)  # train a grid, write its report
    result.best()  # its best configurations
    nnlab.train(data="spirals", hidden=[16, 16], epochs=50).history  # one network
    nnlab.connect().runs()  # everything recorded, in pandas

Each name is loaded on first use, so ``import nnlab`` stays light.
"""

__version__ = "0.1.0"

_API = ("plan", "sweep", "train")
__all__ = ["__version__", "connect", "plan", "render_report", "sweep", "train", "write_report"]


def __getattr__(name: str):
    if name in _API:
        from nnlab import api

        return getattr(api, name)
    raise AttributeError(f"module 'nnlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})


def connect(url: str | None = None):
    """Open the tracking database for reading, e.g. ``nnlab.connect().runs()``.

    See ``nnlab.store.Lab``; the store is imported here lazily, so the engine alone stays light.
    """
    from nnlab.store import connect as _connect

    return _connect(url)


def render_report(lab, sweeps, *, metric: str = "val_loss", threshold: float | None = None) -> str:
    """The HTML convergence report on ``sweeps`` (names) in ``lab``, as one self-contained page.

    See ``nnlab.report.render_report``; imported lazily (it loads matplotlib and Jinja2).
    """
    from nnlab.report import render_report as _render_report

    return _render_report(lab, sweeps, metric=metric, threshold=threshold)


def write_report(lab, sweeps, path=None, **options):
    """Write the report on ``sweeps`` (default ``reports/<sweep>.html``) and return its path.

    See ``nnlab.report.write_report`` for ``directory``, ``metric`` and ``threshold``.
    """
    from nnlab.report import write_report as _write_report

    return _write_report(lab, sweeps, path, **options)
