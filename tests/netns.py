"""Machines for the tests: Linux network namespaces on a private LAN of their own.

Each host is a network namespace (``ip netns``) with one interface, ``eth0``, at 10.77.0.N/24,
whose veth peer is a port of one bridge; the bridge lives in a namespace of its own too, so
nothing is added to the root namespace: no address, no route, no link. Hosts have no default
route, so their traffic cannot leave the LAN. PostgreSQL and Dask run on hosts with
``ip netns exec``; the test process (in the root namespace) reaches PostgreSQL through its
Unix socket, a file, which namespaces share.

Making namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN); ``unavailable()`` says why
they cannot be made here, for a skip (or, under CI, a failure).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections import Counter
from pathlib import Path

from dask_cluster import BLAS_THREADS, DaskCluster
from postgres import find_bin

SUBNET = "10.77.0"  # a /24 that exists only inside the namespaces made here


def _ip(*arguments: str) -> str:
    result = subprocess.run(["ip", *arguments], capture_output=True, text=True, timeout=30)
    if result.returncode:
        raise OSError(f"ip {' '.join(arguments)}: {result.stderr.strip()}")
    return result.stdout


def unavailable() -> str | None:
    """Why network namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed"
    probe = f"nnt-probe-{uuid.uuid4().hex[:6]}"
    try:
        _ip("netns", "add", probe)
    except OSError as error:
        return f"cannot make a network namespace: {error}"
    _ip("netns", "delete", probe)
    return None


class Host:
    """One machine: a network namespace and its address on the LAN."""

    def __init__(self, namespace: str, address: str) -> None:
        self.namespace, self.address = namespace, address
        self.processes: list[subprocess.Popen] = []

    def command(self, arguments: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *arguments]

    def popen(self, arguments: list[str], **options) -> subprocess.Popen:
        """Start ``arguments`` on this host, in a session of its own."""
        options.setdefault("env", os.environ | BLAS_THREADS)
        process = subprocess.Popen(self.command(arguments), start_new_session=True, **options)
        self.processes.append(process)
        return process

    def run(self, arguments: list[str], timeout: float = 120) -> str:
        result = subprocess.run(
            self.command(arguments),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=os.environ | BLAS_THREADS,
        )
        if result.returncode:
            raise OSError(f"{' '.join(arguments)} on {self.namespace}: {result.stderr.strip()}")
        return result.stdout

    def pids(self) -> set[int]:
        """Every process in this host's namespace, whoever started it."""
        return {int(pid) for pid in _ip("netns", "pids", self.namespace).split()}

    def kill_all(self, timeout: float = 30) -> None:
        """SIGKILL every process in the namespace (as if the machine lost its power), until
        none is left; reap those this test started."""
        deadline = time.monotonic() + timeout
        while pids := self.pids():
            if time.monotonic() > deadline:
                raise TimeoutError(f"processes {sorted(pids)} outlive {self.namespace}")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        for process in self.processes:
            process.wait(timeout=timeout)


class Network:
    """Hosts on one bridge. ``close`` kills every process on every host and removes every
    namespace (their veth links go with them), whatever state the test left them in."""

    def __init__(self) -> None:
        self.prefix = f"nnt{os.getpid()}"
        self.hosts: list[Host] = []
        self._made = 0
        self.lan = Host(f"{self.prefix}-lan", "")
        _ip("netns", "add", self.lan.namespace)
        try:
            _ip("-n", self.lan.namespace, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.lan.namespace, "link", "set", "br0", "up")
        except BaseException:
            self.close()
            raise

    def add_host(self, name: str) -> Host:
        """A new host, its namespace named after ``name`` and its number (its address's)."""
        self._made += 1
        host = Host(f"{self.prefix}-{self._made}-{name}", f"{SUBNET}.{self._made}")
        _ip("netns", "add", host.namespace)
        self.hosts.append(host)
        port, lan = f"port{self._made}", ("-n", self.lan.namespace)
        _ip(
            *lan,
            "link",
            "add",
            port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            host.namespace,
        )
        _ip(*lan, "link", "set", port, "master", "br0", "up")
        _ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
        _ip("-n", host.namespace, "link", "set", "eth0", "up")
        _ip("-n", host.namespace, "link", "set", "lo", "up")
        return host

    def unplug(self, host: Host) -> None:
        """Cut ``host`` off the network: its link deleted, its processes left running. Its
        peers' connections to it are not closed; they hang, as with a pulled cable."""
        _ip("-n", host.namespace, "link", "delete", "eth0")

    def remove(self, host: Host) -> None:
        """Take ``host`` off the network for good: its processes killed, its namespace and
        link deleted."""
        host.kill_all()
        _ip("netns", "delete", host.namespace)
        self.hosts.remove(host)

    def close(self) -> None:
        errors = []
        for host in [*self.hosts, self.lan]:
            try:
                host.kill_all()
            except (OSError, subprocess.SubprocessError) as error:  # delete it anyway
                errors.append(error)
            with contextlib.suppress(OSError):
                _ip("netns", "delete", host.namespace)
        self.hosts.clear()
        if errors:
            raise errors[0]


class Postgres:
    """A throwaway PostgreSQL server on ``host``: it listens on the host's address, trusts
    the whole LAN (pg_hba), and keeps its Unix socket in its folder for the test process."""

    PORT = 5432

    def __init__(self, host: Host) -> None:
        initdb, self.pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
        if not (initdb and self.pg_ctl):
            raise FileNotFoundError("initdb/pg_ctl not found: install Debian's postgresql")
        self.host = host
        self.root = Path(tempfile.mkdtemp(prefix="nnlab-pg-netns-"))
        self.data = self.root / "data"
        shutil.chown(self.root, "postgres")  # PostgreSQL refuses to run as root
        self._run([initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8"])
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {SUBNET}.0/24 trust\n")
        options = f"-p {self.PORT} -k {self.root} -c listen_addresses={host.address} -c fsync=off"
        self._run(
            [
                self.pg_ctl,
                "-D",
                str(self.data),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "-l",
                str(self.root / "log"),
                "start",
            ]
        )

    def _run(self, command: list[str]) -> None:
        self.host.run(["runuser", "-u", "postgres", "--", *command])

    def url(self, database: str) -> str:
        """The database's URL on the LAN, for the other hosts."""
        return f"postgresql+psycopg://postgres@{self.host.address}:{self.PORT}/{database}"

    def local_url(self, database: str) -> str:
        """The database's URL through the Unix socket, for the test process."""
        return f"postgresql+psycopg://postgres@/{database}?host={self.root}&port={self.PORT}"

    def _connect(self, database: str = "postgres"):
        import psycopg

        return psycopg.connect(
            host=str(self.root), port=self.PORT, user="postgres", dbname=database, autocommit=True
        )

    def new_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with self._connect() as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return name

    def connections(self, database: str) -> Counter:
        """Open client connections to ``database`` by client address (the socket's, the test
        process's own, are not counted)."""
        with self._connect() as connection:
            rows = connection.execute(
                "SELECT host(client_addr), count(*) FROM pg_stat_activity WHERE datname = %s "
                "AND client_addr IS NOT NULL GROUP BY 1",
                (database,),
            ).fetchall()
        return Counter(dict(rows))

    def log(self) -> str:
        """What the server has logged so far (its errors included)."""
        return (self.root / "log").read_text()

    def stop(self) -> None:
        try:
            self._run([self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"])
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


class MachineCluster(DaskCluster):
    """A Dask scheduler and ``workers`` single-threaded workers (each under its nanny), every
    one on a host of its own, started with Dask's own command-line tools."""

    PORT = 8786

    def __init__(self, network: Network, workers: int = 2, config: dict | None = None) -> None:
        self.network = network
        self.env = (
            os.environ
            | BLAS_THREADS
            | {
                "DASK_" + key.upper().replace(".", "__").replace("-", "_"): value
                for key, value in (config or {}).items()
            }
        )
        self.workers: list[Host] = []
        super().__init__(workers)

    def _start(self, workers: int, nanny: bool) -> None:
        self.scheduler = self._host = self.network.add_host("scheduler")
        self._spawn(
            "distributed.cli.dask_scheduler",
            "--host",
            self._host.address,
            "--port",
            str(self.PORT),
            "--no-dashboard",
            "--scheduler-file",
            str(self.scheduler_file),
        )
        self.address = self._wait_for_address()
        for _ in range(workers):
            self.add_worker()
        self.wait_for_workers(workers)

    def add_worker(self) -> Host:
        self._host = host = self.network.add_host("worker")
        self._spawn(
            "distributed.cli.dask_worker",
            self.address,
            "--host",
            host.address,
            "--nthreads",
            "1",
            "--no-dashboard",
            "--nanny",
            "--local-directory",
            str(self.root),
        )
        self.workers.append(host)
        return host

    def lose(self, host: Host) -> None:
        """The worker machine ``host`` is gone: every process on it killed, its namespace
        and link deleted."""
        self.workers.remove(host)
        self.network.remove(host)

    def cut_off(self, host: Host) -> None:
        """The worker machine ``host`` vanishes without a word: its link goes first, then its
        processes, so that their connections are never closed (nobody hears it go)."""
        self.workers.remove(host)
        self.network.unplug(host)
        host.kill_all()

    def _spawn(self, module: str, *arguments: str) -> None:
        self._processes.append(
            self._host.popen(
                [sys.executable, "-m", module, *arguments],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=self.root,
            )
        )

    def client(self):
        raise NotImplementedError("the root namespace cannot reach the cluster: use a host")

    def wait_for_workers(self, n: int) -> None:
        """Wait, from the scheduler's host, until ``n`` workers are connected."""
        self.scheduler.run(
            [
                sys.executable,
                "-c",
                textwrap.dedent(f"""\
            from distributed import Client
            with Client({self.address!r}, timeout=30) as client:
                client.wait_for_workers({n}, timeout=60)
        """),
            ]
        )
