from __future__ import annotations

import socket

import pytest

from panjereh.devstack.embedded import PortInUseError, ensure_port_free, free_port
from panjereh.devstack.testing import PORT_RANGE, _port_range, pick_port_base


def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(
            PortInUseError, match=f"port {port} \\(for gateway\\) is already in use"
        ):
            ensure_port_free(port, "gateway")


def test_a_free_port_passes() -> None:
    ensure_port_free(free_port(), "gateway")


def test_stacks_pick_ports_below_the_ephemeral_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    assert _port_range() == PORT_RANGE
    assert PORT_RANGE[1] <= 32768
    for _ in range(50):
        base = pick_port_base()
        assert PORT_RANGE[0] <= base <= PORT_RANGE[1] - 7


def test_each_pytest_worker_picks_from_a_slice_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    slices = []
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        low, high = _port_range()
        slices.append((low, high))
        for _ in range(50):
            base = pick_port_base()
            assert low <= base <= high - 7
    (low0, high0), (low1, high1) = slices
    assert PORT_RANGE[0] == low0 < high0 <= low1 < high1 <= PORT_RANGE[1]
