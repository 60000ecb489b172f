"""Whose address counts for per-address limits: X-Forwarded-For only from trusted proxies."""

from __future__ import annotations

from panjereh.identity.dependencies import client_address

GATEWAY = ("10.0.0.0/8",)


class TestClientAddress:
    def test_an_untrusted_peer_is_the_client_whatever_it_claims(self) -> None:
        assert client_address("203.0.113.9", ["1.2.3.4"], GATEWAY) == "203.0.113.9"

    def test_behind_the_gateway_the_rightmost_untrusted_hop_is_the_client(self) -> None:
        # the client forged "1.2.3.4"; the gateway appended the address it really saw
        assert client_address("10.0.0.5", ["1.2.3.4", "198.51.100.7"], GATEWAY) == "198.51.100.7"

    def test_hops_in_one_header_are_read_the_same_way(self) -> None:
        assert client_address("10.0.0.5", ["1.2.3.4, 198.51.100.7"], GATEWAY) == "198.51.100.7"

    def test_trusted_proxies_in_the_chain_are_skipped(self) -> None:
        hops = ["198.51.100.7, 10.1.1.1"]
        assert client_address("10.0.0.5", hops, GATEWAY) == "198.51.100.7"

    def test_the_gateway_without_the_header_is_the_client(self) -> None:
        assert client_address("10.0.0.5", [], GATEWAY) == "10.0.0.5"

    def test_garbage_in_the_header_falls_back_to_the_peer(self) -> None:
        assert client_address("10.0.0.5", ["not-an-address"], GATEWAY) == "10.0.0.5"

    def test_ipv6(self) -> None:
        assert client_address("::1", ["2001:db8::1"], ("::1/128",)) == "2001:db8::1"
