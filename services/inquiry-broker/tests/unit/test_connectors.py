"""The connector dispatcher calls agencies only outside a transaction (claim → call → record)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from panjereh.common.db import Database
from panjereh.common.http import NetworkCallInTransaction, outbound_client
from panjereh.inquiry_broker.connectors import ConnectorAnswer, ConnectorDispatcher
from panjereh.inquiry_broker.service.delivery import ConnectorCall
from panjereh.inquiry_broker.signing import AnswerSigner

#: Never connected to: a unit of work opens its connection lazily, and these tests run none.
NO_DATABASE = "postgresql+asyncpg://nobody@127.0.0.1:1/none"
CALL = ConnectorCall(
    inquiry_id=uuid.uuid4(),
    url="http://land-registry.test/connector",
    payload={"inquiry_id": "x", "type": "land-registry.deeds"},
    timeout_seconds=1.0,
)


@pytest.fixture
async def database() -> AsyncIterator[Database]:
    database = Database(NO_DATABASE)
    yield database
    await database.dispose()


def dispatcher(database: Database, client: httpx.AsyncClient) -> ConnectorDispatcher:
    return ConnectorDispatcher(database=database, signer=AnswerSigner.generate(), client=client)


def agency(calls: list[httpx.Request]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json={"status": "ok", "result": {"parcels": 2}})

    return httpx.MockTransport(answer)


class TestNoNetworkInTransactions:
    async def test_a_connector_call_inside_a_transaction_is_refused_before_sending(
        self, database: Database
    ) -> None:
        calls: list[httpx.Request] = []
        async with outbound_client(transport=agency(calls), follow_redirects=False) as client:
            connectors = dispatcher(database, client)
            async with database.transaction():
                with pytest.raises(NetworkCallInTransaction):
                    await connectors.call(CALL)
        assert calls == []

    async def test_outside_a_transaction_the_call_is_made(self, database: Database) -> None:
        calls: list[httpx.Request] = []
        async with outbound_client(transport=agency(calls), follow_redirects=False) as client:
            answer = await dispatcher(database, client).call(CALL)
        assert answer == ConnectorAnswer(status="ok", result={"parcels": 2})
        assert [json.loads(request.content) for request in calls] == [CALL.payload]


class TestAnswers:
    @pytest.mark.parametrize(
        "response",
        [
            httpx.Response(503, json={"status": "ok", "result": {}}),
            httpx.Response(200, text="not json"),
            httpx.Response(200, json={"status": "maybe"}),
            httpx.Response(200, json={"status": "ok", "result": [1, 2]}),
            httpx.Response(302, headers={"Location": "http://elsewhere.test/"}),
        ],
    )
    async def test_anything_but_a_well_formed_answer_is_an_error(
        self, database: Database, response: httpx.Response
    ) -> None:
        transport = httpx.MockTransport(lambda _request: response)
        async with outbound_client(transport=transport, follow_redirects=False) as client:
            answer = await dispatcher(database, client).call(CALL)
        assert answer == ConnectorAnswer(status="error")
