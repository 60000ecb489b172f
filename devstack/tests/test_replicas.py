"""``--replicas N``: which processes the stack starts, and replicas sharing one port."""

from __future__ import annotations

import socket

import pytest

from panjereh.devstack.cli import parse
from panjereh.devstack.embedded import free_port
from panjereh.devstack.replica import listening_socket
from panjereh.devstack.stack import GATEWAY, SERVICES, replica_names


def test_one_process_per_service_by_default() -> None:
    assert parse(["run"]).replicas == 1
    assert [n for c in SERVICES for n in replica_names(c, 1)] == [c.name for c in SERVICES]


def test_only_the_requests_service_and_the_broker_are_replicated() -> None:
    assert parse(["run", "--replicas", "3"]).replicas == 3
    names = {c.name: replica_names(c, 3) for c in (*SERVICES, GATEWAY)}
    assert names["requests"] == ["requests", "requests-2", "requests-3"]
    assert names["inquiry-broker"] == ["inquiry-broker", "inquiry-broker-2", "inquiry-broker-3"]
    assert names["identity"] == ["identity"]
    assert names["catalog"] == ["catalog"]
    assert names["gateway"] == ["gateway"]


def test_a_replica_count_out_of_range_is_refused() -> None:
    with pytest.raises(SystemExit):
        parse(["run", "--replicas", "0"])


def test_replicas_bind_one_port_and_both_accept() -> None:
    port = free_port()
    first, second = listening_socket("127.0.0.1", port), listening_socket("127.0.0.1", port)
    try:
        first.listen()
        second.listen()
        # a plain socket (no SO_REUSEPORT) cannot take the port while the replicas hold it
        with socket.socket() as intruder, pytest.raises(OSError, match="in use"):
            intruder.bind(("127.0.0.1", port))
        accepted = [0, 0]
        for _ in range(32):
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                pass
        for n, listener in enumerate((first, second)):
            listener.setblocking(False)
            while True:
                try:
                    connection, _ = listener.accept()
                except BlockingIOError:
                    break
                connection.close()
                accepted[n] += 1
        # the kernel spreads new connections over both (by a hash of the client's port)
        assert sum(accepted) == 32
        assert min(accepted) > 0, accepted
    finally:
        first.close()
        second.close()
