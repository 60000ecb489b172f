"""Kernel helpers: negotiation, field errors, JWK/ES256, storable text, workers, lifespans."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Query
from pydantic import AfterValidator, BaseModel, Field

from panjereh.common import jwk
from panjereh.common.app import create_service_app
from panjereh.common.fields import FieldProblem
from panjereh.common.lifespan import Resources
from panjereh.common.negotiation import preferred, preferred_language
from panjereh.common.pagination import Page, PageParams
from panjereh.common.settings import ServiceSettings
from panjereh.common.testing.plugin import running_app
from panjereh.common.workers import PeriodicWorker
from panjereh.contracts.identifiers import normalize_national_code


class TestNegotiation:
    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            (None, "fa"),
            ("", "fa"),
            ("en", "en"),
            ("en-US,fa;q=0.5", "en"),
            ("en;q=0.3, fa", "fa"),
            ("fa-IR", "fa"),
            ("de, en;q=0.1", "en"),
            ("en;q=0", "fa"),
            ("en;q=banana", "fa"),
        ],
    )
    def test_languages(self, header: str | None, expected: str) -> None:
        assert preferred_language(header) == expected

    def test_media_types(self) -> None:
        offered = ("application/json", "application/ld+json")
        assert preferred("application/ld+json", offered, default="application/json") == (
            "application/ld+json"
        )
        mixed = "application/json;q=0.5, application/ld+json"
        assert preferred(mixed, offered, default="application/json") == "application/ld+json"
        assert preferred("text/html", offered, default="application/json") == "application/json"


def national_code(value: str) -> str:
    return normalize_national_code(value)


def adult(value: int) -> int:
    if value < 18:
        raise FieldProblem("too_young", fa="باید دست‌کم ۱۸ سال داشته باشید", en="Must be 18+")
    return value


class Applicant(BaseModel):
    national_code: Annotated[str, AfterValidator(national_code)]
    age: Annotated[int, AfterValidator(adult)]
    name: str = Field(max_length=5)


def form_app() -> FastAPI:
    router = APIRouter()

    @router.post("/apply")
    async def apply(applicant: Applicant) -> dict[str, str]:
        return {"ok": "yes"}

    @router.get("/search")
    async def search(
        category: Annotated[str | None, Query(max_length=50)] = None,
    ) -> dict[str, Any]:
        return {"category": category}

    @router.get("/page")
    async def page(paging: PageParams) -> Page[int]:
        return paging.of([1, 2], total=2)

    return create_service_app(title="forms", settings=ServiceSettings(), routers=[router])


@pytest.fixture
async def forms() -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(form_app()) as client:
        yield client


BAD_APPLICANT = {"national_code": "0013542418", "age": 12, "name": "toolongname"}


class TestFieldErrors:
    async def test_field_errors_speak_persian_by_default(self, forms: httpx.AsyncClient) -> None:
        response = await forms.post("/apply", json=BAD_APPLICANT)
        assert response.status_code == 422
        errors = {e["field"]: e for e in response.json()["errors"]}
        assert errors["national_code"]["code"] == "national_code_checksum"
        assert errors["national_code"]["message"] == "رقم کنترل کد ملی درست نیست"
        assert errors["age"] == {
            "field": "age",
            "code": "too_young",
            "message": "باید دست‌کم ۱۸ سال داشته باشید",
        }
        assert errors["name"]["code"] == "too_long"
        assert "5" in errors["name"]["message"]

    async def test_field_errors_speak_english_when_asked(self, forms: httpx.AsyncClient) -> None:
        response = await forms.post("/apply", json=BAD_APPLICANT, headers={"Accept-Language": "en"})
        errors = {e["field"]: e for e in response.json()["errors"]}
        assert errors["national_code"]["message"] == (
            "the national code's check digit does not match"
        )
        assert errors["name"]["message"] == "At most 5 characters are allowed"
        for error in errors.values():
            assert not error["message"].startswith("Value error")

    async def test_a_missing_field_is_required(self, forms: httpx.AsyncClient) -> None:
        response = await forms.post("/apply", json={}, headers={"Accept-Language": "en"})
        codes = {e["field"]: e["code"] for e in response.json()["errors"]}
        assert codes == {"national_code": "required", "age": "required", "name": "required"}


class TestStorableText:
    """NUL and lone surrogates would fail in the database driver as a 500; they are a 422."""

    async def test_a_nul_in_the_query_is_422_naming_the_field(
        self, forms: httpx.AsyncClient
    ) -> None:
        response = await forms.get("/search?category=a%00")
        assert response.status_code == 422
        assert response.json()["errors"] == [
            {
                "field": "query.category",
                "code": "text_not_storable",
                "message": "این متن نویسه‌ای دارد که ذخیره‌شدنی نیست (مانند NUL)",
            }
        ]

    async def test_a_nul_in_the_path_is_422(self, forms: httpx.AsyncClient) -> None:
        response = await forms.get("/sea%00rch")
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "path"

    @pytest.mark.parametrize(
        ("raw", "field"),
        [
            (b'{"national_code": "0013542419", "age": 20, "name": "a\\u0000b"}', "name"),
            (b'{"national_code": "\\ud800", "age": 20, "name": "x"}', "national_code"),
            (b'{"extra": [{"deep": "\\u0000"}]}', "extra.0.deep"),
        ],
    )
    async def test_unstorable_json_text_is_422_naming_the_field(
        self, forms: httpx.AsyncClient, raw: bytes, field: str
    ) -> None:
        response = await forms.post(
            "/apply", content=raw, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422
        assert [e["field"] for e in response.json()["errors"]] == [field]

    async def test_ordinary_persian_text_and_emoji_pass(self, forms: httpx.AsyncClient) -> None:
        ok = await forms.get("/search", params={"category": "کارت ملی 😀"})
        assert ok.json() == {"category": "کارت ملی 😀"}
        body = b'{"national_code": "0013542419", "age": 20, "name": "\\ud83d\\ude00"}'
        response = await forms.post(
            "/apply", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.json() == {"ok": "yes"}


class TestPagination:
    async def test_a_page_has_the_contract_shape(self, forms: httpx.AsyncClient) -> None:
        response = await forms.get("/page?page=1&page_size=5")
        assert response.json() == {"items": [1, 2], "total": 2, "page": 1, "page_size": 5}

    async def test_page_size_is_capped_at_100(self, forms: httpx.AsyncClient) -> None:
        response = await forms.get("/page?page_size=101")
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "query.page_size"


class TestJwk:
    def test_kid_is_the_rfc7638_thumbprint(self) -> None:
        # the EC public key of RFC 7517 Appendix A.1: only crv, kty, x and y count
        members = {
            "crv": "P-256",
            "kty": "EC",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
        }
        assert jwk.thumbprint(members) == "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U"

    def test_sign_and_verify_round_trip(self) -> None:
        key = jwk.generate_private_key()
        token = jwk.sign_compact(key, {"typ": "test+jws"}, {"a": "ب", "n": 1})
        header, payload = jwk.verify_compact(token, {"keys": [jwk.public_jwk(key)]})
        assert header["alg"] == "ES256"
        assert header["kid"] == jwk.public_jwk(key)["kid"]
        assert payload == {"a": "ب", "n": 1}

    def test_a_changed_payload_or_another_key_does_not_verify(self) -> None:
        key, other = jwk.generate_private_key(), jwk.generate_private_key()
        token = jwk.sign_compact(key, {}, {"amount": 1})
        head, _, signature = token.split(".")
        forged = f"{head}.{jwk.b64url(jwk.canonical_json({'amount': 1000}))}.{signature}"
        with pytest.raises(jwk.InvalidJws):
            jwk.verify_compact(forged, {"keys": [jwk.public_jwk(key)]})
        with pytest.raises(jwk.InvalidJws):
            jwk.verify_compact(token, {"keys": [{**jwk.public_jwk(other), "kid": "x"}]})

    def test_pem_round_trip_with_a_password(self) -> None:
        key = jwk.generate_private_key()
        pem = jwk.private_pem(key, b"pw")
        assert "ENCRYPTED" in pem
        assert jwk.public_jwk(jwk.load_private_key(pem, b"pw")) == jwk.public_jwk(key)


class TestPeriodicWorker:
    async def test_it_runs_until_stopped_and_wake_skips_the_wait(self) -> None:
        ran = asyncio.Event()
        count = 0

        async def step() -> None:
            nonlocal count
            count += 1
            ran.set()

        worker = PeriodicWorker("test", step, interval=60)
        await worker.start()
        await asyncio.wait_for(ran.wait(), 1)
        ran.clear()
        worker.wake()  # without it the next run would be a minute away
        await asyncio.wait_for(ran.wait(), 1)
        await worker.stop()
        assert count == 2
        assert not worker.running

    async def test_more_work_runs_again_at_once(self) -> None:
        remaining = [3]

        async def step() -> bool:
            remaining[0] -= 1
            return remaining[0] > 0

        worker = PeriodicWorker("drain", step, interval=60)
        await worker.start()
        for _ in range(100):
            if remaining[0] == 0:
                break
            await asyncio.sleep(0.01)
        await worker.stop()
        assert remaining == [0]

    async def test_a_failure_is_one_log_line_and_is_retried(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        attempts = 0
        done = asyncio.Event()

        async def step() -> None:
            nonlocal attempts
            attempts += 1
            if attempts < 3:
                raise ConnectionError("down")
            done.set()

        worker = PeriodicWorker("flaky", step, interval=0.01, max_backoff=0.02)
        with caplog.at_level(logging.WARNING, logger="panjereh.common.workers"):
            await worker.start()
            await asyncio.wait_for(done.wait(), 2)
            await worker.stop()
        failures = [r for r in caplog.records if r.getMessage() == "background step failed"]
        assert len(failures) == 2
        assert worker.failures == 2
        assert worker.runs >= 1

    async def test_stop_cancels_a_step_that_outlives_the_grace(self) -> None:
        cancelled = asyncio.Event()
        started = asyncio.Event()

        async def step() -> None:
            started.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        worker = PeriodicWorker("slow", step, interval=1)
        await worker.start()
        await started.wait()
        await worker.stop(grace=0.05)
        assert cancelled.is_set()


class TestResources:
    async def test_opened_in_order_closed_in_reverse(self) -> None:
        events: list[str] = []

        class Component:
            def __init__(self, name: str) -> None:
                self.name = name

            async def start(self) -> None:
                events.append(f"start {self.name}")

            async def stop(self) -> None:
                events.append(f"stop {self.name}")

        @asynccontextmanager
        async def context(name: str) -> AsyncIterator[str]:
            events.append(f"enter {name}")
            yield name
            events.append(f"exit {name}")

        async def setup(app: FastAPI, resources: Resources) -> None:
            await resources.start(Component("relay"))
            assert await resources.enter(context("auth")) == "auth"

            async def close() -> None:
                events.append("close callback")

            resources.on_close(close)

        app = create_service_app(title="order", settings=ServiceSettings(), setup=setup)
        async with running_app(app):
            events.append("serving")
        assert events == [
            "start relay",
            "enter auth",
            "serving",
            "close callback",
            "exit auth",
            "stop relay",
        ]

    async def test_what_was_opened_is_closed_when_setup_fails_half_way(self) -> None:
        events: list[str] = []

        class Component:
            async def start(self) -> None:
                events.append("start")

            async def stop(self) -> None:
                events.append("stop")

        async def setup(app: FastAPI, resources: Resources) -> None:
            await resources.start(Component())
            raise RuntimeError("the broker is misconfigured")

        app = create_service_app(title="broken", settings=ServiceSettings(), setup=setup)
        with pytest.raises(RuntimeError, match="misconfigured"):
            async with running_app(app):
                pass
        assert events == ["start", "stop"]


class _Node:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.peer = self


class TestLongLivedHeap:
    async def test_start_up_objects_are_frozen_while_serving_and_thawed_at_shutdown(
        self,
    ) -> None:
        made: dict[str, weakref.ref[_Node]] = {}

        async def setup(app: FastAPI, resources: Resources) -> None:
            made["at start-up"] = weakref.ref(_Node())  # garbage already, for the collector
            app.state.kept = _Node()

        def full_passes() -> float:
            from prometheus_client import REGISTRY  # noqa: PLC0415

            count = "panjereh_gc_pause_seconds_count"
            return REGISTRY.get_sample_value(count, {"generation": "2"}) or 0.0

        app = create_service_app(title="heap", settings=ServiceSettings(), setup=setup)
        assert gc.get_freeze_count() == 0
        before = full_passes()
        gc.disable()  # no automatic pass may free the start-up garbage before the freeze
        try:
            async with running_app(app):
                gc.enable()
                # what start-up built is out of every generation a collection walks
                assert gc.get_freeze_count() > 0
                assert not any(obj is app.state.kept for obj in gc.get_objects())
                made["while serving"] = weakref.ref(_Node())
                gc.collect()
                assert made["while serving"]() is None  # collected as usual
                assert made["at start-up"]() is not None  # frozen: left for the shutdown
                assert full_passes() == before + 1  # timed for panjereh_gc_pause_seconds
        finally:
            gc.enable()
        assert gc.get_freeze_count() == 0
        assert any(obj is app.state.kept for obj in gc.get_objects())
        gc.collect()
        assert made["at start-up"]() is None
        assert full_passes() == before + 1  # the process no longer serves: not timed


class TestMetrics:
    async def test_http_requests_are_counted_by_route_template(self) -> None:
        router = APIRouter()

        @router.get("/things/{thing_id}")
        async def thing(thing_id: str) -> dict[str, str]:
            return {"id": thing_id}

        app = create_service_app(title="metrics", settings=ServiceSettings(), routers=[router])
        async with running_app(app) as client:
            for thing_id in ("0013542419", "b", "c"):
                assert (await client.get(f"/things/{thing_id}")).status_code == 200
            await client.get("/nowhere")
            response = await client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        text = response.text
        line = next(
            line
            for line in text.splitlines()
            if line.startswith("panjereh_http_requests_total{")
            and 'route="/things/{thing_id}"' in line
        )
        assert float(line.rsplit(" ", 1)[1]) >= 3
        assert 'route="unmatched",status="404"' in text
        # raw paths (and what they carry, like national codes) never become labels
        assert "0013542419" not in text
        assert "panjereh_http_request_duration_seconds_bucket" in text
        assert "panjereh_db_pool_connections" in text

    async def test_worker_runs_and_failures_are_counted(self) -> None:
        from prometheus_client import REGISTRY  # noqa: PLC0415

        def value(name: str) -> float:
            return REGISTRY.get_sample_value(name, {"worker": "metered"}) or 0.0

        runs, failures = (
            value("panjereh_worker_runs_total"),
            value("panjereh_worker_failures_total"),
        )
        calls = 0

        async def step() -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("first fails")

        worker = PeriodicWorker("metered", step, interval=0.01, max_backoff=0.02)
        await worker.start()
        for _ in range(200):
            if calls >= 3:
                break
            await asyncio.sleep(0.01)
        await worker.stop()
        assert value("panjereh_worker_failures_total") == failures + 1
        assert value("panjereh_worker_runs_total") >= runs + 2
