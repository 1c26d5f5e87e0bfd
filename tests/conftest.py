"""Shared fixtures: small seeded data sets for the engine, fresh databases for the store."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import nnlab
from nnlab.data import sine, spirals
from nnlab.store import RunWriter, open_store, register_sweep
from nnlab.store.registry import RunRow

# The trampoline: SIGINT and SIGHUP set as asked, then the command exec'd in its place.
_TRAMPOLINE = (
    "import os, signal, sys; "
    "[signal.signal(getattr(signal, name), getattr(signal, how)) "
    "for name, how in zip(sys.argv[1].split(), sys.argv[2].split())]; "
    "os.execv(sys.argv[3], sys.argv[3:])"
)


def from_a_terminal(command: list[str], ignoring: tuple[str, ...] = ()) -> list[str]:
    """``command``, started with SIGINT and SIGHUP at their defaults, as an interactive shell
    starts it, whatever this pytest was started with (a CI runner's script ``&`` ignores
    SIGINT, ``nohup`` SIGHUP): nnlab keeps ignoring what it was started ignoring. Signals
    named in ``ignoring`` are started ignored on purpose: ``("SIGHUP",)`` as ``nohup`` does,
    ``("SIGINT",)`` as a script's ``command &``."""
    names = ("SIGINT", "SIGHUP")
    hows = ["SIG_IGN" if name in ignoring else "SIG_DFL" for name in names]
    return [sys.executable, "-c", _TRAMPOLINE, " ".join(names), " ".join(hows), *command]


def wait_for_exec(process: subprocess.Popen, seconds: float = 10) -> None:
    """Until ``from_a_terminal``'s trampoline has set the signals and exec'd the command."""
    deadline = time.monotonic() + seconds
    cmdline = Path(f"/proc/{process.pid}/cmdline")
    # empty while an exec is under way: the first one's (Popen returns as it closes its
    # close-on-exec pipe) and the trampoline's
    while (now := cmdline.read_bytes()) == b"" or _TRAMPOLINE.encode() in now:
        assert process.poll() is None and time.monotonic() < deadline, "it did not start"
        time.sleep(0.005)


@pytest.fixture
def regression() -> tuple[np.ndarray, np.ndarray]:
    """40 noisy samples of sin(x): X of shape (40, 1), y float of shape (40, 1)."""
    data = sine(n_samples=40, seed=0)
    return data.X, data.y


@pytest.fixture
def classification() -> tuple[np.ndarray, np.ndarray]:
    """30 spiral points in 3 classes: X of shape (30, 2), y int64 class ids of shape (30,)."""
    data = spirals(n_samples=30, classes=3, seed=0)
    return data.X, data.y


# --- the engine's two paths for the update rules (nnlab/engine/kernels.py) ---


def require_numba() -> None:
    """Skip where numba is not installed, but never on CI, which installs it."""
    try:
        import numba  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("numba is not installed here (pip install -e '.[fast]')")


# glibc's fenv_t on x86-64 ends in the MXCSR (bytes 28-31): fegetenv/fesetenv set it without
# numba, as other libraries that flush (torch.set_flush_denormal) do with their own code
def require_glibc_fenv() -> None:
    """Skip where the C library is not glibc, whose fenv_t SET_FTZ_DAZ_WITH_LIBM writes."""
    if platform.libc_ver()[0] != "glibc":
        pytest.skip(f"SET_FTZ_DAZ_WITH_LIBM needs glibc's fenv_t, not {platform.libc_ver()!r}")


SET_FTZ_DAZ_WITH_LIBM = """
import ctypes, ctypes.util
libm = ctypes.CDLL(ctypes.util.find_library("m"))
env = (ctypes.c_uint32 * 8)()
assert libm.fegetenv(env) == 0
env[7] |= 0x8040
assert libm.fesetenv(env) == 0
"""


def without_numba(script: str) -> str:
    """What ``script`` prints, run in a fresh Python where numba cannot be imported (a None in
    sys.modules makes its import fail, as it fails where numba is not installed); the names
    numpy as np, InputError, MLP and train and a small classification X, y are defined."""
    preamble = (
        "import sys\n"
        "sys.modules['numba'] = None\n"
        "import numpy as np\n"
        "from nnlab.checks import InputError\n"
        "from nnlab.engine import MLP, train\n"
        "X, y = np.random.default_rng(0).standard_normal((40, 2)), np.arange(40) % 2\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", preamble + script],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return out.stdout


@pytest.fixture(params=["numpy", "numba"])
def each_kernel_path(request, monkeypatch) -> str:
    """The test runs with the NumPy reference rules, then with the compiled ones."""
    if request.param == "numba":
        require_numba()
    monkeypatch.setenv("NNLAB_KERNELS", request.param)
    return request.param


# --- the tracking store: every store test runs on SQLite and on a real PostgreSQL server ---


@pytest.fixture(scope="session")
def pg_server():
    from postgres import PostgresServer

    try:
        server = PostgresServer()
    except (FileNotFoundError, OSError) as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not available here: {error}")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A fresh, empty database: an SQLite file, or a new database on the test PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'nnlab.db'}"
    return request.getfixturevalue("pg_server").new_database()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'nnlab.db'}"


# --- a small filled sweep, for the reading API and nnlab sql ---

ACTIVATIONS = ("sigmoid", "tanh", "relu")


def fill(db_url: str) -> str:
    """A sweep of 3 activations × 2 seeds, 4 epochs each; loss falls fastest for relu."""
    store = open_store(db_url)
    rows = [
        RunRow(
            {
                "learning_rate": 0.1,
                "batch_size": 32,
                "activation": a,
                "gd": "minibatch",
                "optimizer": "sgd",
                "hidden": [4],
                "epochs": 4,
            },
            f"{a}-{seed}",
            seed,
        )
        for a in ACTIVATIONS
        for seed in (0, 1)
    ]
    register_sweep(store, "acts", rows, description="activations")
    for run in nnlab.connect(db_url).runs().itertuples():
        writer = RunWriter(store, run.run_id, flush_seconds=0)
        writer.start()
        speed = 1 + ACTIVATIONS.index(run.activation)
        for epoch in range(1, 5):
            loss = 1.0 / (epoch * speed) + run.seed * 0.01
            writer.log(
                {
                    "epoch": epoch,
                    "train_loss": loss,
                    "val_loss": loss + 0.1,
                    "train_accuracy": 0.5,
                    "val_accuracy": 0.4,
                    "grad_norm": 1.0,
                    "learning_rate": 0.1,
                    "seconds": 0.01,
                }
            )
        writer.finish("completed")
    return db_url


@pytest.fixture
def filled(db_url) -> str:
    return fill(db_url)


@pytest.fixture
def filled_sqlite(sqlite_url) -> str:
    return fill(sqlite_url)


@pytest.fixture
def filled_pg(pg_server) -> str:
    return fill(pg_server.new_database())
