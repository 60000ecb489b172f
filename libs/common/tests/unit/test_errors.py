from __future__ import annotations

import secrets
import socket
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, Field
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from panjereh.common.app import create_service_app
from panjereh.common.errors import AppError, Text
from panjereh.common.settings import ServiceSettings
from panjereh.common.testing.plugin import running_app


class ChallengeExpired(AppError):
    status = 410
    code = "otp_expired"
    title = Text("کد یکبار مصرف منقضی شده است", "The one-time code has expired")


class Person(BaseModel):
    birth_year: int = Field(ge=1900)
    name: str


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def build_app() -> FastAPI:
    router = APIRouter()

    @router.get("/database-down")
    async def database_down() -> None:
        engine = create_async_engine(
            f"postgresql+asyncpg://nobody@127.0.0.1:{closed_port()}/nothing"
        )
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        finally:
            await engine.dispose()

    @router.get("/database-socket-gone")
    async def database_socket_gone() -> None:
        # a local server mid-restart: its Unix socket file is not there (FileNotFoundError)
        missing = f"/nonexistent-{secrets.token_hex(8)}"
        engine = create_async_engine(f"postgresql+asyncpg://nobody@/nothing?host={missing}")
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        finally:
            await engine.dispose()

    @router.get("/database-shutting-down")
    async def database_shutting_down() -> None:
        # what the driver raises while PostgreSQL stops, as SQLAlchemy hands it on
        # (the driver's error, translated by the dialect, wrapped by the engine)
        shutting_down = asyncpg.CannotConnectNowError("the database system is shutting down")
        try:
            try:
                raise shutting_down
            except asyncpg.CannotConnectNowError as exc:
                translated = RuntimeError("the database system is shutting down")
                raise translated from exc
        except RuntimeError as exc:
            raise sa_exc.DBAPIError("SELECT 1", {}, exc) from exc

    @router.get("/database-connection-closed")
    async def database_connection_closed() -> None:
        # what the driver raises, unwrapped (a unit sent by the driver itself), when asked to
        # use a connection the server ended while it was idle
        raise asyncpg.InterfaceError("cannot call Connection.fetch(): connection is closed")

    @router.get("/agency-down")
    async def agency_down() -> None:
        async with httpx.AsyncClient() as outside:
            await outside.get(f"http://127.0.0.1:{closed_port()}/")

    @router.post("/people")
    async def create_person(person: Person) -> Person:
        return person

    @router.get("/expired")
    async def expired() -> None:
        raise ChallengeExpired

    @router.get("/boom")
    async def boom() -> None:
        msg = "secret internals"
        raise RuntimeError(msg)

    return create_service_app(
        title="test",
        settings=ServiceSettings(max_body_bytes=2048),
        routers=[router],
    )


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(build_app()) as client:
        yield client


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert str(body["type"]).endswith(code)
    return body


class TestProblemDetails:
    async def test_unknown_route_is_a_persian_404_by_default(
        self, client: httpx.AsyncClient
    ) -> None:
        body = assert_problem(await client.get("/nowhere"), 404, "not_found")
        assert body["title"] == "یافت نشد"

    async def test_accept_language_en_picks_english(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/nowhere", headers={"Accept-Language": "en-US,fa;q=0.5"})
        assert assert_problem(response, 404, "not_found")["title"] == "Not found"

    async def test_quality_values_decide_the_language(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/nowhere", headers={"Accept-Language": "en;q=0.3, fa"})
        assert assert_problem(response, 404, "not_found")["title"] == "یافت نشد"

    async def test_validation_failure_names_each_field(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/people", json={"birth_year": 1800})
        body = assert_problem(response, 422, "validation_failed")
        fields = {error["field"] for error in body["errors"]}  # type: ignore[attr-defined]
        assert fields == {"birth_year", "name"}

    async def test_app_error_keeps_its_status_and_code(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/expired", headers={"Accept-Language": "en"})
        body = assert_problem(response, 410, "otp_expired")
        assert body["title"] == "The one-time code has expired"

    async def test_unexpected_exception_is_a_500_without_internals(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/boom")
        body = assert_problem(response, 500, "internal_error")
        assert "secret internals" not in response.text
        assert "Traceback" not in response.text
        assert body["title"] == "خطای داخلی رخ داد"

    async def test_wrong_method_is_a_405_problem(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.delete("/expired"), 405, "method_not_allowed")


class TestDatabaseOutage:
    async def test_an_unreachable_database_is_a_503_to_retry(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/database-down")
        body = assert_problem(response, 503, "database_unavailable")
        assert response.headers["retry-after"] == "2"
        assert "127.0.0.1" not in str(body)

    async def test_a_database_whose_socket_is_gone_is_a_503(
        self, client: httpx.AsyncClient
    ) -> None:
        assert_problem(await client.get("/database-socket-gone"), 503, "database_unavailable")

    async def test_a_database_shutting_down_is_a_503(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get("/database-shutting-down"), 503, "database_unavailable")

    async def test_a_connection_the_driver_found_closed_is_a_503(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/database-connection-closed")
        assert_problem(response, 503, "database_unavailable")

    async def test_another_system_down_is_not_taken_for_the_database(
        self, client: httpx.AsyncClient
    ) -> None:
        assert_problem(await client.get("/agency-down"), 500, "internal_error")


class TestRequestIds:
    async def test_a_well_formed_request_id_is_echoed(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/livez", headers={"X-Request-ID": "abc-123"})
        assert response.headers["x-request-id"] == "abc-123"

    async def test_a_malformed_request_id_is_replaced(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/livez", headers={"X-Request-ID": "<script>"})
        assert response.headers["x-request-id"] != "<script>"
        assert len(response.headers["x-request-id"]) == 32

    async def test_problem_bodies_carry_the_request_id(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/nowhere", headers={"X-Request-ID": "trace-me"})
        assert response.json()["request_id"] == "trace-me"


class TestBodyLimit:
    async def test_declared_oversized_body_is_413(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/people", content=b"x" * 4096)
        assert_problem(response, 413, "payload_too_large")

    async def test_streamed_oversized_body_is_413(self, client: httpx.AsyncClient) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(8):
                yield b"x" * 512

        response = await client.post("/people", content=chunks())
        assert_problem(response, 413, "payload_too_large")

    async def test_a_streamed_oversized_json_body_is_413(self, client: httpx.AsyncClient) -> None:
        """The JSON body is read whole for the storable-text check, still within the limit."""

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"name": "'
            for _ in range(8):
                yield b"\\u0000" * 100

        response = await client.post(
            "/people", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert_problem(response, 413, "payload_too_large")

    async def test_a_refusal_carries_the_request_id_and_a_traceparent(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post(
            "/people", content=b"x" * 4096, headers={"X-Request-ID": "refused-1"}
        )
        assert_problem(response, 413, "payload_too_large")
        assert response.headers["x-request-id"] == "refused-1"
        assert response.json()["request_id"] == "refused-1"
        assert response.headers["traceparent"].startswith("00-")
