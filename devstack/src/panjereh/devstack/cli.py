"""``python -m panjereh.devstack run``: the whole platform on this machine."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from panjereh.devstack.stack import StackConfig


def parse(args: Sequence[str] | None = None) -> StackConfig:
    parser = argparse.ArgumentParser(
        prog="python -m panjereh.devstack",
        description="Run Panjereh locally: embedded PostgreSQL and broker, every service.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start everything and wait for Ctrl-C")
    run.add_argument("--var-dir", type=Path, default=Path("var"), help="local state (default var)")
    run.add_argument(
        "--port-base",
        type=int,
        default=8000,
        help="gateway port; services take the next four (default 8000)",
    )
    run.add_argument("--kafka-port", type=int, default=9092, help="embedded broker port")
    run.add_argument("--ready-timeout", type=float, default=90.0, help="seconds to wait")
    run.add_argument(
        "--replicas",
        type=int,
        default=1,
        choices=range(1, 9),
        metavar="N",
        help="processes of the requests service and of the inquiry broker (default 1)",
    )
    namespace = parser.parse_args(args)
    return StackConfig(
        var_dir=namespace.var_dir.resolve(),
        port_base=namespace.port_base,
        kafka_port=namespace.kafka_port,
        ready_timeout=namespace.ready_timeout,
        replicas=namespace.replicas,
    )
