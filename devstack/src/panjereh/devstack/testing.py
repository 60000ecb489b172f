"""Start and stop the local stack from tests, exactly as ``make run`` does (a subprocess)."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

READY_TIMEOUT = 120.0


class StackStartError(RuntimeError):
    pass


@dataclass
class RunningStack:
    process: subprocess.Popen[str]
    gateway: str
    var_dir: Path
    output: Path

    def state(self) -> dict[str, object]:
        state: dict[str, object] = json.loads((self.var_dir / "run" / "stack.json").read_text())
        return state


def _ports_free(ports: list[int]) -> bool:
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def pick_port_base() -> int:
    for _ in range(100):
        base = random.randrange(20000, 40000, 10)  # noqa: S311 - not security relevant
        if _ports_free(list(range(base, base + 6))):
            return base
    msg = "no block of free ports found"
    raise RuntimeError(msg)


def start_stack(var_dir: Path, output: Path) -> RunningStack:
    base = pick_port_base()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PANJEREH_")}
    env.pop("DATABASE_URL", None)
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
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
    if stack.process.poll() is None:
        stack.process.send_signal(signal.SIGINT)
    try:
        return stack.process.wait(60)
    except subprocess.TimeoutExpired:
        stack.process.kill()
        return stack.process.wait()
