from __future__ import annotations

import socket

import pytest

from panjereh.devstack.embedded import PortInUseError, ensure_port_free, free_port


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
