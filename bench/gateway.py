"""The gateway against nginx, in front of the same upstream, in the same run, with wrk.

For each upstream (``hello``: the smallest FastAPI endpoint; ``catalog``: a catalog-like read,
a FastAPI endpoint answering a page of 20 card summaries, ~9 KB of JSON built with pydantic)
and each connection count (1 and 32), wrk drives nginx (Debian ``nginx-light``, one worker,
keep-alive to the upstream) and then the gateway (one uvicorn worker, uvloop + httptools, the
same settings as production: access log on, rate limiter on with limits above the load, edge
routing and headers), and prints req/s and p99 of each and the ratios. Targets (the issue):
gateway throughput >= 0.6x nginx's at 32 connections and p99 <= 2x nginx's.

Every server runs on a free loopback port and is stopped at the end. Not a test: numbers depend
on the machine; docs/gateway.md records the ones that chose the design.

    .venv/bin/python bench/gateway.py [--duration 10] [--connections 1 32] [--upstreams hello]
    .venv/bin/python bench/gateway.py --candidate httpx     # the gateway with another client
    .venv/bin/python bench/gateway.py --gateway-app panjereh.gateway.main:create_app

Needs ``nginx`` and ``wrk`` (Debian: ``apt-get install -y nginx-light wrk``). The ``aiohttp``
candidate needs aiohttp importable (``--pythonpath DIR`` adds a folder holding it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from benchkit import emit

from panjereh.devstack.embedded import free_port

BENCH_DIR = Path(__file__).resolve().parent
PATHS = {"hello": "/api/v1/catalog/stats", "catalog": "/api/v1/catalog/services"}
TARGET_THROUGHPUT_RATIO = 0.6
TARGET_P99_RATIO = 2.0


# ------------------------------------------------------------------------------ upstream apps
def hello_upstream() -> Any:
    """The smallest FastAPI endpoint: what a service's cheapest read costs at least."""
    from fastapi import FastAPI  # noqa: PLC0415 - imported in the upstream process only

    app = FastAPI()

    @app.get("/api/v1/catalog/stats")
    async def stats() -> dict[str, int]:
        return {"services_total": 4000, "agencies_total": 120}

    _health(app)
    return app


def catalog_upstream() -> Any:
    """A catalog-like read: a page of 20 card summaries validated and serialised by pydantic."""
    from fastapi import FastAPI  # noqa: PLC0415
    from pydantic import BaseModel  # noqa: PLC0415

    class Text(BaseModel):
        fa: str
        en: str

    class CardSummary(BaseModel):
        code: str
        title: Text
        agency: str
        category: str
        maturity: int
        channels: list[str]
        life_events: list[str]
        sla_days: int

    class Page(BaseModel):
        items: list[CardSummary]
        total: int
        page: int
        page_size: int
        facets: dict[str, dict[str, int]]

    cards = [
        {
            "code": f"service-{n:04d}",
            "title": {"fa": f"صدور گواهی شماره {n} برای شهروندان", "en": f"Certificate {n}"},
            "agency": ["tax", "police", "civil-registry", "education"][n % 4],
            "category": ["documents", "vehicles", "taxes", "education"][n % 4],
            "maturity": n % 6,
            "channels": ["web", "mobile", "kiosk"],
            "life_events": ["birth", "moving-house"],
            "sla_days": 3 + n % 10,
        }
        for n in range(20)
    ]
    facets = {
        "agency": {"tax": 1200, "police": 800, "civil-registry": 900, "education": 1100},
        "maturity": {str(level): 600 + level for level in range(6)},
    }
    app = FastAPI()

    @app.get("/api/v1/catalog/services", response_model=Page)
    async def search(page: int = 1, page_size: int = 20) -> Page:
        return Page.model_validate(
            {"items": cards, "total": 4000, "page": page, "page_size": page_size, "facets": facets}
        )

    _health(app)
    return app


def _health(app: Any) -> None:
    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    @app.get("/livez")
    async def livez() -> dict[str, str]:
        return {"status": "live"}


# ------------------------------------------------------------------------------ candidates
# The gateway with another upstream client in place of its own pool (same interface), to
# measure what the client costs. Used with --candidate; never by the gateway itself.
class _HttpxPool:
    def __init__(self, name: str, url: str, **options: Any) -> None:
        from panjereh.gateway import upstream  # noqa: PLC0415

        self._errors = upstream
        self.name = name
        self.url = url.rstrip("/")
        self.read_timeout = options["read_timeout"]
        self.client = httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=options["max_connections"],
                max_keepalive_connections=options["max_connections"],
                keepalive_expiry=options["keepalive_seconds"],
            ),
            timeout=httpx.Timeout(options["read_timeout"], connect=options["connect_timeout"]),
        )

    async def request(
        self, method: str, target: bytes, headers: Any, body: Any, *, framed: bool = False
    ) -> Any:
        request = self.client.build_request(
            method, self.url + target.decode("latin-1"), headers=headers, content=body
        )
        try:
            response = await self.client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise self._errors.UpstreamTimedOut(str(exc)) from exc
        except httpx.TransportError as exc:
            raise self._errors.UpstreamUnreachable(str(exc)) from exc
        return _StreamedResponse(
            response.status_code,
            [(name.lower(), value) for name, value in response.headers.raw],
            response.aiter_raw(),
            response.aclose,
        )

    async def close(self) -> None:
        await self.client.aclose()


class _AiohttpPool:
    def __init__(self, name: str, url: str, **options: Any) -> None:
        import aiohttp  # noqa: PLC0415

        from panjereh.gateway import upstream  # noqa: PLC0415

        self._aiohttp = aiohttp
        self._errors = upstream
        self.name = name
        self.url = url.rstrip("/")
        self._options = options
        self._session: Any = None

    async def request(
        self, method: str, target: bytes, headers: Any, body: Any, *, framed: bool = False
    ) -> Any:
        aiohttp = self._aiohttp
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._options["max_connections"],
                    keepalive_timeout=self._options["keepalive_seconds"],
                ),
                timeout=aiohttp.ClientTimeout(
                    sock_read=self._options["read_timeout"],
                    sock_connect=self._options["connect_timeout"],
                ),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            )
        try:
            response = await self._session.request(
                method,
                self.url + target.decode("latin-1"),
                headers=[(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers],
                data=body or None,
                allow_redirects=False,
            )
        except TimeoutError as exc:
            raise self._errors.UpstreamTimedOut(str(exc)) from exc
        except aiohttp.ClientError as exc:
            raise self._errors.UpstreamUnreachable(str(exc)) from exc

        async def release() -> None:
            response.release()

        return _StreamedResponse(
            response.status,
            [(name.lower(), value) for name, value in response.raw_headers],
            response.content.iter_any(),
            release,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class _StreamedResponse:
    complete = False

    def __init__(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: AsyncIterator[bytes],
        close: Callable[[], Any],
    ) -> None:
        self.status = status
        self.headers = headers
        self._body = body
        self._close = close

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._body:
                yield chunk
        finally:
            await self._close()

    def body_now(self) -> bytes:  # never called: complete is False
        raise NotImplementedError


def _candidate(pool_class: type) -> Any:
    from panjereh.gateway import main  # noqa: PLC0415

    main.UpstreamPool = pool_class  # type: ignore[attr-defined]
    return main.create_app()


def candidate_httpx() -> Any:
    """httpx as the kernel leaves it in every process: instrumented by OpenTelemetry."""
    return _candidate(_HttpxPool)


def candidate_httpx_bare() -> Any:
    """httpx without the kernel's OpenTelemetry instrumentation (what the client alone costs)."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor  # noqa: PLC0415

    app = _candidate(_HttpxPool)
    HTTPXClientInstrumentor().uninstrument()
    return app


def candidate_aiohttp() -> Any:
    return _candidate(_AiohttpPool)


CANDIDATES = {
    "httptools": "panjereh.gateway.main:create_app",
    "httpx": "gateway:candidate_httpx",
    "httpx-bare": "gateway:candidate_httpx_bare",
    "aiohttp": "gateway:candidate_aiohttp",
}


# ------------------------------------------------------------------------------ processes
NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream service {{
        server 127.0.0.1:{upstream};
        keepalive 256;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://service;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $remote_addr;
        }}
    }}
}}
"""


def need(tool: str) -> str:
    found = shutil.which(tool) or (
        f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None
    )
    if found is None:
        raise SystemExit(
            f"{tool} is not installed. On Debian: "
            "apt-get update && apt-get install -y nginx-light wrk"
        )
    return found


def wait_until(url: str, process: subprocess.Popen[bytes], name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited with code {process.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{name} did not answer {url}")


@contextmanager
def running(
    command: list[str], *, env: dict[str, str], log: Path, ready: str, name: str
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        wait_until(ready, process, name)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def uvicorn(app: str, port: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", app, "--factory", "--host", "127.0.0.1",
        "--port", str(port), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
        *extra,
    ]  # fmt: skip


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, connections: int, duration: int) -> dict[str, float]:
    threads = "1" if connections == 1 else "2"
    command = [need("wrk"), "-t", threads, "-c", str(connections), "-d", f"{duration}s"]
    output = subprocess.run(
        [*command, "--latency", url], capture_output=True, text=True, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])  # type: ignore[index]
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    if non_2xx or errors:
        raise SystemExit(f"wrk saw failures at {url}:\n{output}")
    assert p99 is not None, output
    return {"rps": rps, "p99_ms": float(p99[1]) * _UNITS[p99[2]]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of load before each run")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 32])
    parser.add_argument(
        "--upstreams", nargs="+", choices=sorted(PATHS), default=["hello", "catalog"]
    )
    parser.add_argument("--candidate", choices=sorted(CANDIDATES), default="httptools")
    parser.add_argument("--gateway-app", help="module:factory to run instead of a candidate")
    parser.add_argument("--pythonpath", action="append", default=[], help="extra import folder")
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    options = parser.parse_args()
    nginx, _ = need("nginx"), need("wrk")
    gateway_app = options.gateway_app or CANDIDATES[options.candidate]

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="panjereh-bench-gateway-") as scratch:
        work = Path(scratch)
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (work / sub).mkdir()
        work.chmod(0o755)
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("PANJEREH_")}
        python_path = os.pathsep.join([str(BENCH_DIR), *options.pythonpath])
        for upstream_name in options.upstreams:
            upstream_port, nginx_port, gateway_port = free_port(), free_port(), free_port()
            upstream_url = f"http://127.0.0.1:{upstream_port}"
            gateway_env = {
                **base_env,
                "PYTHONPATH": python_path,
                "PANJEREH_ENV": "prod",
                "PANJEREH_LOG_LEVEL": "INFO",  # the access log is part of the cost
                # limits on, set above the load so that their bookkeeping is measured
                "PANJEREH_GATEWAY_RATE_LIMIT_IP_FACTOR": "100000",
                **{
                    f"PANJEREH_GATEWAY_{name}_URL": upstream_url
                    for name in ("CATALOG", "IDENTITY", "REQUESTS", "INQUIRY_BROKER")
                },
                "PANJEREH_JWKS_URL": f"{upstream_url}/.well-known/jwks.json",
            }
            conf = work / f"nginx-{upstream_name}.conf"
            conf.write_text(NGINX_CONF.format(dir=work, upstream=upstream_port, port=nginx_port))
            path = PATHS[upstream_name]
            with (
                running(
                    uvicorn(f"gateway:{upstream_name}_upstream", upstream_port),
                    env={**base_env, "PYTHONPATH": python_path},
                    log=work / f"upstream-{upstream_name}.log",
                    ready=f"{upstream_url}/livez",
                    name="upstream",
                ),
                running(
                    [nginx, "-p", str(work), "-c", str(conf)],
                    env=base_env,
                    log=work / "nginx.log",
                    ready=f"http://127.0.0.1:{nginx_port}{path}",
                    name="nginx",
                ),
                running(
                    uvicorn(gateway_app, gateway_port, "--no-proxy-headers"),
                    env=gateway_env,
                    log=work / "gateway.log",
                    ready=f"http://127.0.0.1:{gateway_port}{path}",
                    name="gateway",
                ),
            ):
                for connections in options.connections:
                    row: dict[str, Any] = {"upstream": upstream_name, "connections": connections}
                    for proxy, port in (("nginx", nginx_port), ("gateway", gateway_port)):
                        url = f"http://127.0.0.1:{port}{path}"
                        if options.warmup:
                            wrk(url, connections, options.warmup)
                        row[proxy] = wrk(url, connections, options.duration)
                    row["throughput_ratio"] = row["gateway"]["rps"] / row["nginx"]["rps"]
                    row["p99_ratio"] = row["gateway"]["p99_ms"] / row["nginx"]["p99_ms"]
                    results.append(row)
                    print_row(row)
    print_summary(results, gateway_app)
    for row in results:
        where = f"{row['upstream']}, {row['connections']} conn."
        emit(
            f"gateway req/s ({where})",
            row["gateway"]["rps"],
            "req/s",
            reference="nginx req/s",
            reference_value=row["nginx"]["rps"],
            target=f">= {TARGET_THROUGHPUT_RATIO}x" if row["connections"] == 32 else None,
        )
        emit(
            f"gateway p99 ({where})",
            row["gateway"]["p99_ms"],
            "ms",
            reference="nginx p99",
            reference_value=row["nginx"]["p99_ms"],
            target=f"<= {TARGET_P99_RATIO}x" if row["connections"] == 32 else None,
        )
    if options.json:
        print(json.dumps({"gateway_app": gateway_app, "results": results}))
    return 0


def print_row(row: dict[str, Any]) -> None:
    nginx, gateway = row["nginx"], row["gateway"]
    print(
        f"{row['upstream']:<8} c={row['connections']:<3} "
        f"nginx {nginx['rps']:>8.0f} req/s p99 {nginx['p99_ms']:>6.2f} ms | "
        f"gateway {gateway['rps']:>8.0f} req/s p99 {gateway['p99_ms']:>6.2f} ms | "
        f"throughput {row['throughput_ratio']:.2f}x  p99 {row['p99_ratio']:.2f}x",
        flush=True,
    )


def print_summary(results: list[dict[str, Any]], gateway_app: str) -> None:
    print(f"\ngateway app: {gateway_app}; cpus: {os.cpu_count()}; "
          f"load average: {os.getloadavg()[0]:.2f}")  # fmt: skip
    for row in results:
        if row["connections"] != 32:
            continue
        met = (
            row["throughput_ratio"] >= TARGET_THROUGHPUT_RATIO
            and row["p99_ratio"] <= TARGET_P99_RATIO
        )
        print(
            f"{row['upstream']} at 32 connections: throughput {row['throughput_ratio']:.2f}x "
            f"(target >= {TARGET_THROUGHPUT_RATIO}x), p99 {row['p99_ratio']:.2f}x "
            f"(target <= {TARGET_P99_RATIO}x): {'met' if met else 'NOT met'}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
