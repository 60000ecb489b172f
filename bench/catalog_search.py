"""Catalog search latency at 5,000 cards, over real HTTP to a running catalog service.

Starts an embedded PostgreSQL in a temporary directory, migrates and seeds the catalog (the
demo seed plus synthetic cards), runs the catalog under uvicorn as its own process, and times
search requests made one after another with an HTTP client. Prints p50/p95/p99 per kind of
query and overall. Target from the issue: p95 <= 25 ms. Everything stops by itself.

    .venv/bin/python bench/catalog_search.py [--cards 5000] [--rounds 40]
    .venv/bin/python bench/catalog_search.py --database-url postgresql+asyncpg://...  # reuse
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from benchkit import emit

from panjereh.catalog.seed import seed
from panjereh.common.db import Database, ensure_databases
from panjereh.common.migrations import upgrade
from panjereh.devstack.embedded import EmbeddedPostgres, free_port

QUERIES: dict[str, list[dict[str, str | int]]] = {
    "browse": [{}, {"page": 3}, {"page_size": 50}],
    "fulltext": [
        {"q": "گواهی"},
        {"q": "كارت ملي"},  # Arabic letters
        {"q": "تمدید گذرنامه"},
        {"q": "پروانه کسب"},
        {"q": "می‌خواهم"},
        {"q": "ماده ۱۸۶"},
        {"q": "Passport renewal"},
        {"q": "وام دانشجویان"},
    ],
    "filtered": [
        {"q": "گواهی", "maturity": 5},
        {"agency": "tax", "life_event": "taxes"},
        {"channel": "mobile", "audience": "business"},
        {"category": "education", "page": 2},
    ],
    "fuzzy": [{"q": "گذرنمه"}, {"q": "مفاصاحسب"}, {"q": "یارنه"}],
}


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def prepare(url: str, cards: int) -> float:
    started = time.monotonic()
    await asyncio.to_thread(upgrade, "panjereh.catalog", url)
    database = Database(url, pool_size=2)
    try:
        report = await seed(database, approving_organisation="bench", synthetic=cards - 45)
    finally:
        await database.dispose()
    print(f"seeded {report.cards_added} cards in {time.monotonic() - started:.1f} s")
    return time.monotonic() - started


async def measure(base: str, rounds: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {kind: [] for kind in QUERIES}
    # the reference, side by side in the same run: the same server's cheapest endpoint over
    # the same connection, so the machine's noise hits both and the ratio stays comparable
    timings["reference"] = []
    async with httpx.AsyncClient(base_url=base, timeout=10.0) as client:
        for _ in range(3):  # warm the connection pool, plans and caches
            for params_list in QUERIES.values():
                for params in params_list:
                    (await client.get("/api/v1/catalog/services", params=params)).raise_for_status()
        for _ in range(rounds):
            for kind, params_list in QUERIES.items():
                for params in params_list:
                    began = time.perf_counter()
                    response = await client.get("/api/v1/catalog/services", params=params)
                    elapsed = (time.perf_counter() - began) * 1000
                    response.raise_for_status()
                    timings[kind].append(elapsed)
                    began = time.perf_counter()
                    (await client.get("/livez")).raise_for_status()
                    timings["reference"].append((time.perf_counter() - began) * 1000)
        total = (await client.get("/api/v1/catalog/stats")).json()["services_total"]
    print(f"catalog holds {total} published cards")
    return timings


def wait_live(base: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            msg = f"the catalog exited with code {process.returncode}"
            raise RuntimeError(msg)
        try:
            if httpx.get(f"{base}/livez", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    msg = "the catalog did not start"
    raise RuntimeError(msg)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cards", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument(
        "--database-url", help="reuse an already migrated and seeded catalog database"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="panjereh-bench-") as scratch:
        postgres: EmbeddedPostgres | None = None
        server: subprocess.Popen[bytes] | None = None
        try:
            if args.database_url:
                url = args.database_url
            else:
                postgres = EmbeddedPostgres(Path(scratch) / "pg")
                postgres.start()
                admin = postgres.url("postgres", driver="postgresql")
                asyncio.run(ensure_databases(admin, ["catalog"]))
                url = postgres.url("catalog")
                asyncio.run(prepare(url, args.cards))
            port = free_port()
            env = {
                **os.environ,
                "PANJEREH_ENV": os.environ.get("PANJEREH_ENV", "dev"),
                "PANJEREH_CATALOG_DATABASE_URL": url,
                "PANJEREH_LOG_LEVEL": "WARNING",
                # no broker here: the outbox relay waits and retries; reads do not need it
                "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
            }
            log = (Path(scratch) / "catalog.log").open("wb")
            server = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "panjereh.catalog.main:create_app", "--factory",
                 "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
                 "--loop", "uvloop", "--http", "httptools"],
                env=env, stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
            base = f"http://127.0.0.1:{port}"
            wait_live(base, server)
            timings = asyncio.run(measure(base, args.rounds))
        finally:
            if server is not None:
                server.terminate()
                server.wait(15)
            if postgres is not None:
                postgres.stop()
    reference = timings.pop("reference")
    everything = [t for samples in timings.values() for t in samples]
    print(f"{'query kind':<10} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for kind, samples in [*timings.items(), ("all", everything)]:
        print(
            f"{kind:<10} {len(samples):>5} {statistics.median(samples):>8.1f} "
            f"{percentile(samples, 0.95):>8.1f} {percentile(samples, 0.99):>8.1f}"
        )
    p95 = percentile(everything, 0.95)
    reference_p95 = percentile(reference, 0.95)
    print(f"{'reference':<10} {len(reference):>5} {statistics.median(reference):>8.1f} "
          f"{reference_p95:>8.1f} {percentile(reference, 0.99):>8.1f}  (GET /livez)")  # fmt: skip
    print(f"search p95 over real HTTP: {p95:.1f} ms (target <= 25 ms)")
    print(f"search p95 / reference p95: {p95 / reference_p95:.1f}x")
    emit(
        f"catalog search p95 at {args.cards:,} cards",
        p95,
        "ms",
        reference="GET /livez p95",
        reference_value=reference_p95,
        target="<= 25 ms",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
