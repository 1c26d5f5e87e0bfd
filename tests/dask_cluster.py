"""A real Dask cluster for the tests: a scheduler and worker processes on loopback, started
with Dask's own command-line tools, as a user would start them on their machines."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BLAS_THREADS = {
    name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
}


class DaskCluster:
    """``workers`` single-threaded worker processes, each under a nanny (which restarts a worker
    that dies) unless ``nanny`` is False."""

    def __init__(self, workers: int = 2, nanny: bool = True, env: dict | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="nnlab-dask-"))
        self.env = os.environ | BLAS_THREADS | (env or {})  # the workers' environment
        self.scheduler_file = self.root / "scheduler.json"
        self._processes: list[subprocess.Popen] = []
        try:
            self._start(workers, nanny)
        except BaseException:  # leave no process behind
            self.stop()
            raise

    def _start(self, workers: int, nanny: bool) -> None:
        self._spawn(
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(self.scheduler_file),
        )
        self.address = self._wait_for_address()
        for _ in range(workers):
            self._spawn(
                "distributed.cli.dask_worker",
                self.address,
                "--nthreads",
                "1",
                "--no-dashboard",
                "--nanny" if nanny else "--no-nanny",
                "--local-directory",
                str(self.root),
            )
        self.wait_for_workers(workers)

    def _spawn(self, module: str, *arguments: str) -> None:
        """Start one of Dask's tools in a session of its own (see ``stop``)."""
        self._processes.append(
            subprocess.Popen(
                [sys.executable, "-m", module, *arguments],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=self.env,
                cwd=self.root,
                start_new_session=True,
            )
        )

    def _wait_for_address(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.scheduler_file.exists():
                try:
                    return json.loads(self.scheduler_file.read_text())["address"]
                except (ValueError, KeyError):  # still being written
                    pass
            time.sleep(0.1)
        raise TimeoutError("the Dask scheduler did not start")

    def client(self):
        from distributed import Client

        return Client(self.address, timeout=30)

    def wait_for_workers(self, n: int) -> None:
        with self.client() as client:
            client.wait_for_workers(n, timeout=60)

    def worker_pids(self) -> list[int]:
        """The pids of the processes that run tasks (not their nannies)."""
        with self.client() as client:
            return list(client.run(os.getpid).values())

    def kill_worker(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        """Stop every process, the workers a nanny started included: each tool runs in a
        session of its own, and the whole process group goes."""
        for process in reversed(self._processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)
