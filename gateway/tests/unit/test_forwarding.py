from __future__ import annotations

import re

import pytest

from panjereh.gateway.forwarding import ClientAddress, child_traceparent, request_id

INGRESS = ClientAddress(["10.1.0.0/16"])


class TestClientAddress:
    def test_without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says(
        self,
    ) -> None:
        assert ClientAddress([]).resolve("203.0.113.9", [b"1.2.3.4"]) == "203.0.113.9"

    def test_an_untrusted_peer_is_the_client(self) -> None:
        assert INGRESS.resolve("203.0.113.9", [b"1.2.3.4"]) == "203.0.113.9"

    def test_from_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client(self) -> None:
        # the client wrote "1.2.3.4"; the ingress appended the address it saw
        assert INGRESS.resolve("10.1.2.3", [b"1.2.3.4, 198.51.100.7"]) == "198.51.100.7"

    def test_several_headers_and_trusted_hops_are_skipped(self) -> None:
        assert (
            INGRESS.resolve("10.1.2.3", [b"1.2.3.4", b"198.51.100.7, 10.1.9.9"]) == "198.51.100.7"
        )

    def test_garbage_where_an_address_should_be_leaves_the_proxy_as_the_client(self) -> None:
        assert INGRESS.resolve("10.1.2.3", [b"1.2.3.4, not-an-ip"]) == "10.1.2.3"

    def test_the_proto_is_believed_from_trusted_proxies_only(self) -> None:
        assert INGRESS.scheme("10.1.2.3", "http", b"https") == "https"
        assert INGRESS.scheme("203.0.113.9", "http", b"https") == "http"
        assert INGRESS.scheme("10.1.2.3", "http", b"gopher") == "http"


class TestIds:
    def test_a_well_formed_request_id_is_echoed(self) -> None:
        assert request_id(b"abc-123") == b"abc-123"

    @pytest.mark.parametrize("bad", [b"", b"has space", b"x" * 129, b"semi;colon", None])
    def test_a_malformed_or_missing_one_is_replaced(self, bad: bytes | None) -> None:
        assert re.fullmatch(rb"[0-9a-f]{32}", request_id(bad))

    def test_a_valid_traceparent_continues_the_trace_with_a_new_span(self) -> None:
        incoming = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        child = child_traceparent(incoming)
        assert child.startswith(b"00-0af7651916cd43dd8448eb211c80319c-")
        assert child.endswith(b"-01")
        assert child.split(b"-")[2] != b"b7ad6b7169203331"

    @pytest.mark.parametrize(
        "bad",
        [
            None,
            b"garbage",
            b"00-00000000000000000000000000000000-b7ad6b7169203331-01",
            b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        ],
    )
    def test_otherwise_a_new_trace_starts(self, bad: bytes | None) -> None:
        child = child_traceparent(bad)
        assert re.fullmatch(rb"00-[0-9a-f]{32}-[0-9a-f]{16}-00", child)
        assert b"0af7651916cd43dd8448eb211c80319c" not in child
