"""Smart requests end to end through the gateway, the whole platform as separate processes.

Starts the stack as ``make run`` does (``devstack.testing.start_stack``, in a temporary
directory), logs citizens in by OTP (the dev SMS outbox), then ``--clients`` concurrent
clients each submit a smart request (card 11010000001, "copy of birth certificate": one
``civil-registry.person`` inquiry over the broker and Kafka to the simulated registry, then the
card's CEL rules approve a living adult) and poll ``GET /api/v1/requests/{tracking_code}``
every ``--poll-ms`` until it is decided, then submit the next: a closed loop, for
``--seconds`` after ``--warmup`` seconds. Measured: submit → decision visible to the citizen
(p50/p99), decided requests per second, and that none is lost (every submitted request final,
through the API and in the requests database). Targets: p50 <= 150 ms, p99 <= 500 ms,
>= 100 decided/s.

The reference, in the same run at the same concurrency: an authenticated GET of one request
(gateway → requests → PostgreSQL, no Kafka), as req/s and p99, and the ratios. Then one client
alone for ``--alone-seconds``: the pipeline's latency when nothing queues.

Where the time goes: CPU seconds of every process of the stack during each phase (from
``/proc/<pid>/stat``: the components in ``stack.json``, the rule workers, PostgreSQL's
backends, the Kafka broker, this client, the rest of the machine), and each step of the
requests' histories (submitted → awaiting_inquiries → deciding → approved → seen), with the
inquiry broker's own time for the inquiry.

Citizens are spread so that none exceeds the gateway's per-caller limits (writes 2/s, reads
20/s); 429s are counted and printed. Identity's per-IP OTP limit (1000 per 10 min in dev) is
raised for this stack only when ``--citizens`` needs it, and the override is printed.

    .venv/bin/python bench/requests_e2e.py [--clients 20] [--seconds 25] [--warmup 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from benchkit import emit

from panjereh.contracts.identifiers import complete_national_code
from panjereh.devstack.testing import Launch, RunningStack, start_stack, stop_stack

SMART_CARD = "11010000001"  # copy of birth certificate: approves a living adult
FINAL = ("approved", "rejected", "failed", "cancelled")
STEPS = ("submitted", "awaiting_inquiries", "deciding", "approved")
TARGET_P50_MS = 150.0
TARGET_P99_MS = 500.0
TARGET_DECIDED_PER_S = 100.0
#: a request not decided this long after its submission counts as lost
LOST_AFTER_S = 30.0
TICKS = os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))] if ordered else 0.0


# ------------------------------------------------------------------------------ citizens
@dataclass(frozen=True)
class Citizen:
    national_code: str
    headers: dict[str, str]


class BenchError(RuntimeError):
    pass


async def login(client: httpx.AsyncClient, national_code: str, mobile: str) -> Citizen:
    for _ in range(10):
        challenge = await client.post(
            "/api/v1/auth/otp", json={"national_code": national_code, "mobile": mobile}
        )
        # 503: the mobile registry did not answer in time (e.g. its consumer still joining
        # its group just after start-up); nothing was recorded, so asking again is safe
        if challenge.status_code != 503:
            break
        await asyncio.sleep(1.0)
    if challenge.status_code != 202:
        msg = f"OTP refused for {mobile}: {challenge.status_code} {challenge.text}"
        raise BenchError(msg)
    for _ in range(200):
        items = (await client.get("/api/v1/dev/sms-outbox", params={"mobile": mobile})).json()
        if items["items"]:
            break
        await asyncio.sleep(0.1)
    else:
        msg = f"no OTP reached the dev outbox for {mobile}"
        raise BenchError(msg)
    verified = await client.post(
        "/api/v1/auth/otp/verify",
        json={
            "challenge_id": challenge.json()["challenge_id"],
            "code": str(items["items"][0]["tokens"][0]),
        },
    )
    if verified.status_code != 200:
        msg = f"OTP not verified: {verified.status_code} {verified.text}"
        raise BenchError(msg)
    return Citizen(national_code, {"Authorization": f"Bearer {verified.json()['access_token']}"})


async def login_all(client: httpx.AsyncClient, count: int) -> list[Citizen]:
    gate = asyncio.Semaphore(16)

    async def one(n: int) -> Citizen:
        async with gate:
            # codes and mobiles of this bench only (valid checksums; no special simulator code)
            return await login(client, complete_national_code(f"28{n:07d}"), f"0936{n:07d}")

    return list(await asyncio.gather(*(one(n) for n in range(1, count + 1))))


# ------------------------------------------------------------------------------ CPU accounting
def _stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (index 0 is field 3, the state)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def _ticks(fields: list[str], *, reaped_children: bool) -> int:
    own = int(fields[11]) + int(fields[12])  # utime + stime
    return own + (int(fields[13]) + int(fields[14]) if reaped_children else 0)


def _children() -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            found.setdefault(int(fields[1]), []).append(int(entry.name))
    return found


@dataclass(frozen=True)
class ProcessGroups:
    """Each name: a process, with its children (rule workers, PostgreSQL backends) counted in."""

    roots: dict[str, int]
    #: counted without their children (the supervisor: its children are the components)
    alone: frozenset[str] = frozenset({"supervisor"})

    @classmethod
    def of(cls, stack: RunningStack) -> ProcessGroups:
        state = stack.state()
        processes = state["processes"]
        assert isinstance(processes, dict)
        roots = {str(name): int(pid) for name, pid in processes.items()}
        roots["supervisor"] = int(str(state["supervisor"]))
        if state.get("broker"):
            roots["kafka (tansu)"] = int(str(state["broker"]))
        postmaster = stack.var_dir / "postgres" / "postmaster.pid"
        if postmaster.exists():
            roots["postgresql"] = int(postmaster.read_text().splitlines()[0])
        return cls(roots)

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far per group (children that ended are in their parent's counts)."""
        children = _children()
        seconds: dict[str, float] = {}
        for name, pid in self.roots.items():
            fields = _stat(pid)
            if fields is None:
                continue
            alone = name in self.alone
            ticks = _ticks(fields, reaped_children=not alone)
            if not alone:
                for child in children.get(pid, []):
                    if (child_fields := _stat(child)) is not None:
                        ticks += _ticks(child_fields, reaped_children=True)
            seconds[name] = ticks / TICKS
        times = os.times()
        seconds["bench client (this process)"] = times.user + times.system
        return seconds


def machine_busy() -> float:
    """CPU seconds spent by the whole machine so far (every core; idle and iowait excluded)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / TICKS


@dataclass
class CpuWindow:
    groups: ProcessGroups
    started: float = 0.0
    before: dict[str, float] = field(default_factory=dict)
    busy_before: float = 0.0
    seconds: float = 0.0
    used: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self.before, self.busy_before, self.started = (
            self.groups.cpu(),
            machine_busy(),
            time.monotonic(),
        )

    def stop(self) -> None:
        after = self.groups.cpu()
        self.seconds = time.monotonic() - self.started
        self.used = {name: after[name] - self.before.get(name, 0.0) for name in after}
        self.used["rest of the machine"] = max(
            0.0, machine_busy() - self.busy_before - sum(self.used.values())
        )


# ------------------------------------------------------------------------------ load
@dataclass
class Sample:
    citizen: Citizen
    tracking_code: str
    started: float  # monotonic, at the submit
    submitted_wall: float  # time.time() at the submit, to compare with the history
    latency_s: float  # submit → decision seen by the citizen
    submit_s: float  # the POST alone
    polls: int
    status: str
    history: list[dict[str, Any]]


@dataclass
class Load:
    samples: list[Sample] = field(default_factory=list)
    #: tracking code → decided or not, for every accepted submission
    submitted: dict[str, bool] = field(default_factory=dict)
    throttled: Counter[str] = field(default_factory=Counter)


async def _post(client: httpx.AsyncClient, citizen: Citizen, load: Load) -> httpx.Response:
    key = f"bench-{uuid.uuid4()}"
    for _ in range(50):
        response = await client.post(
            "/api/v1/requests",
            json={"service_code": SMART_CARD, "inputs": {}},
            headers={**citizen.headers, "Idempotency-Key": key},
        )
        if response.status_code != 429:
            return response
        load.throttled["POST"] += 1
        await asyncio.sleep(float(response.headers.get("Retry-After") or 0.5))
    msg = "throttled 50 times in a row"
    raise BenchError(msg)


async def decide_one(
    client: httpx.AsyncClient, citizen: Citizen, load: Load, poll_s: float
) -> Sample:
    started, wall = time.monotonic(), time.time()
    response = await _post(client, citizen, load)
    submit_s = time.monotonic() - started
    if response.status_code != 201:
        msg = f"submit refused: {response.status_code} {response.text}"
        raise BenchError(msg)
    tracking_code = response.json()["tracking_code"]
    load.submitted[tracking_code] = False
    polls, body = 0, {}
    while time.monotonic() - started < LOST_AFTER_S:
        await asyncio.sleep(poll_s)
        read = await client.get(f"/api/v1/requests/{tracking_code}", headers=citizen.headers)
        polls += 1
        if read.status_code == 429:
            load.throttled["GET"] += 1
            continue
        body = read.json()
        if body.get("status") in FINAL:
            load.submitted[tracking_code] = True
            break
    return Sample(
        citizen,
        tracking_code,
        started,
        wall,
        time.monotonic() - started,
        submit_s,
        polls,
        str(body.get("status")),
        body.get("history", []),
    )


async def closed_loop(
    client: httpx.AsyncClient,
    citizens: Sequence[Citizen],
    load: Load,
    *,
    until: float,
    poll_s: float,
) -> None:
    n = 0
    while time.monotonic() < until:
        load.samples.append(await decide_one(client, citizens[n % len(citizens)], load, poll_s))
        n += 1


async def reference_loop(
    client: httpx.AsyncClient,
    mine: Sequence[tuple[Citizen, str]],
    timings: list[float],
    throttled: Counter[str],
    *,
    until: float,
) -> None:
    """GET one request (of each of this client's citizens in turn), as fast as it answers."""
    n = 0
    while time.monotonic() < until:
        citizen, tracking_code = mine[n % len(mine)]
        n += 1
        began = time.monotonic()
        response = await client.get(f"/api/v1/requests/{tracking_code}", headers=citizen.headers)
        if response.status_code == 429:
            throttled["GET"] += 1
            await asyncio.sleep(float(response.headers.get("Retry-After") or 0.1))
            continue
        response.raise_for_status()
        timings.append(time.monotonic() - began)


# ------------------------------------------------------------------------------ the database
async def database_facts(stack: RunningStack, tracking_codes: list[str]) -> dict[str, Any]:
    """Statuses in the requests database, and the broker's own time per inquiry."""
    env = Launch.of(stack.pid("requests")).env

    def url(variable: str) -> str:
        return env[variable].replace("postgresql+asyncpg://", "postgresql://", 1)

    requests_db = await asyncpg.connect(url("PANJEREH_REQUESTS_DATABASE_URL"))
    try:
        by_status = dict(
            await requests_db.fetch("SELECT status, count(*) FROM requests.request GROUP BY 1")
        )
        documents = await requests_db.fetchval("SELECT count(*) FROM requests.document")
    finally:
        await requests_db.close()
    broker_db = await asyncpg.connect(url("PANJEREH_INQUIRY_BROKER_DATABASE_URL"))
    try:
        broker_ms = [
            row[0]
            for row in await broker_db.fetch(
                "SELECT extract(epoch FROM answered_at - created_at) * 1000"
                " FROM inquiry_broker.inquiry WHERE tracking_code = ANY($1)"
                " AND answered_at IS NOT NULL",
                tracking_codes,
            )
        ]
    finally:
        await broker_db.close()
    return {"by_status": by_status, "documents": documents, "broker_ms": broker_ms}


# ------------------------------------------------------------------------------ the report
def _at(moment: str) -> float:
    return datetime.fromisoformat(moment).timestamp()


def steps_of(samples: Iterable[Sample]) -> dict[str, list[float]]:
    """Milliseconds spent in each step, from the histories and the client's clock."""
    steps: dict[str, list[float]] = {}
    for sample in samples:
        at = {move["to"]: _at(move["at"]) for move in sample.history}
        if [move["to"] for move in sample.history] != list(STEPS):
            continue
        seen_wall = sample.submitted_wall + sample.latency_s
        points = [
            ("client → submitted (gateway, intake)", sample.submitted_wall, at["submitted"]),
            ("submitted → awaiting_inquiries", at["submitted"], at["awaiting_inquiries"]),
            ("awaiting_inquiries → deciding", at["awaiting_inquiries"], at["deciding"]),
            ("deciding → approved (rules, sign)", at["deciding"], at["approved"]),
            ("approved → seen by the citizen", at["approved"], seen_wall),
        ]
        for name, begin, end in points:
            steps.setdefault(name, []).append((end - begin) * 1000)
    return steps


def print_cpu(
    decide: CpuWindow, reference: CpuWindow, *, decided: int, gets: int, polls: float
) -> None:
    """CPU per process in both phases; per decided request with and without its polls (each
    poll costing what a GET of the reference cost), so the pipeline's own cost shows."""
    print(
        "\nwhere the CPU goes (per process, children included: rule workers, PostgreSQL backends)"
    )
    print(
        f"  {'':<30}{'decide phase':>34}{'reference phase':>24}\n"
        f"  {'process':<30}{'CPU s':>8}{'% core':>8}{'ms/req':>9}{'-polls':>9}"
        f"{'CPU s':>8}{'% core':>8}{'ms/GET':>8}"
    )
    names = sorted(decide.used, key=lambda name: -decide.used[name])
    for name in names:
        used, ref = decide.used[name], reference.used.get(name, 0.0)
        per_request = 1000 * used / max(decided, 1)
        per_get = 1000 * ref / max(gets, 1)
        print(
            f"  {name:<30}{used:>8.2f}{100 * used / decide.seconds:>8.0f}{per_request:>9.2f}"
            f"{per_request - polls * per_get:>9.2f}"
            f"{ref:>8.2f}{100 * ref / reference.seconds:>8.0f}{per_get:>8.2f}"
        )
    cores = os.cpu_count() or 1
    for label, window in (("decide", decide), ("reference", reference)):
        total = sum(window.used.values())
        print(
            f"  {label} phase: {window.seconds:.1f} s, {total:.1f} CPU s used of "
            f"{cores * window.seconds:.1f} ({100 * total / (cores * window.seconds):.0f}% of "
            f"{cores} cores)"
        )


@dataclass
class Run:
    """What one run measured."""

    warm: Load
    load: Load
    window: tuple[float, float]
    reference: list[float]
    reference_throttled: Counter[str]
    decide_cpu: CpuWindow
    reference_cpu: CpuWindow
    #: one client alone: the pipeline's latency when nothing queues
    alone: Load


async def measure(stack: RunningStack, options: argparse.Namespace) -> Run:
    poll_s = options.poll_ms / 1000
    limits = httpx.Limits(max_connections=options.clients * 2, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=30.0, limits=limits) as client:
        began = time.monotonic()
        citizens = await login_all(client, options.citizens)
        print(f"{len(citizens)} citizens logged in in {time.monotonic() - began:.1f} s")
        # each client its own citizens: none goes past the gateway's per-caller limits
        share = [citizens[n :: options.clients] for n in range(options.clients)]

        warm = Load()
        until = time.monotonic() + options.warmup
        await asyncio.gather(
            *(closed_loop(client, mine, warm, until=until, poll_s=poll_s) for mine in share)
        )

        groups = ProcessGroups.of(stack)
        decide_cpu, load = CpuWindow(groups), Load()
        decide_cpu.start()
        window_start = time.monotonic()
        until = window_start + options.seconds
        await asyncio.gather(
            *(closed_loop(client, mine, load, until=until, poll_s=poll_s) for mine in share)
        )
        decide_cpu.stop()  # after the last requests in flight were decided: they are counted
        window_end = until

        # the reference: one decided request of each citizen, read again and again
        one_each = {s.citizen.national_code: (s.citizen, s.tracking_code) for s in load.samples}
        to_read = [
            [one_each[c.national_code] for c in mine if c.national_code in one_each]
            for mine in share
        ]
        reference: list[float] = []
        throttled: Counter[str] = Counter()
        reference_cpu = CpuWindow(groups)
        reference_cpu.start()
        until = time.monotonic() + options.reference_seconds
        await asyncio.gather(
            *(
                reference_loop(client, mine, reference, throttled, until=until)
                for mine in to_read
                if mine
            )
        )
        reference_cpu.stop()

        alone = Load()
        until = time.monotonic() + options.alone_seconds
        await closed_loop(client, share[0], alone, until=until, poll_s=poll_s)
    return Run(
        warm,
        load,
        (window_start, window_end),
        reference,
        throttled,
        decide_cpu,
        reference_cpu,
        alone,
    )


def report(run: Run, facts: dict[str, Any], options: argparse.Namespace) -> bool:
    """Print the numbers; whether nothing was lost."""
    window_start, window_end = run.window
    submitted = {**run.warm.submitted, **run.load.submitted, **run.alone.submitted}
    # latencies: every request submitted in the window (each was followed until decided);
    # throughput: the decisions seen within the window
    measured = run.load.samples
    latencies = [s.latency_s * 1000 for s in measured]
    in_window = [s for s in measured if s.started + s.latency_s <= window_end]
    decided_per_s = len(in_window) / (window_end - window_start)
    lost = [code for code, decided in submitted.items() if not decided]
    not_final = sum(n for status, n in facts["by_status"].items() if status not in FINAL)
    reference_ms = [t * 1000 for t in run.reference]
    reference_per_s = len(run.reference) / run.reference_cpu.seconds
    p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
    ref_p50, ref_p99 = statistics.median(reference_ms), percentile(reference_ms, 0.99)
    polls = sum(s.polls for s in measured)

    print(
        f"\nsmart requests, {options.clients} clients, closed loop, poll every "
        f"{options.poll_ms:.0f} ms; warm-up {options.warmup:.0f} s, measured "
        f"{window_end - window_start:.1f} s"
    )
    print(f"  {'':<38}{'n':>7}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}  target")
    rows: list[tuple[str, list[float], str]] = [
        ("submit → decided, seen", latencies, "p50 <= 150, p99 <= 500"),
        ("  of which the POST", [s.submit_s * 1000 for s in measured], ""),
        *((f"  {name}", values, "") for name, values in steps_of(measured).items()),
        ("  (broker: inquiry asked → answered)", facts["broker_ms"], ""),
        ("reference: GET one request", reference_ms, ""),
        ("1 client alone: submit → seen", [s.latency_s * 1000 for s in run.alone.samples], ""),
        *((f"  {name}", values, "") for name, values in steps_of(run.alone.samples).items()),
    ]
    for name, values, target in rows:
        if values:
            print(
                f"  {name:<38}{len(values):>7}{statistics.median(values):>9.1f}"
                f"{percentile(values, 0.9):>9.1f}{percentile(values, 0.99):>9.1f}"
                f"{max(values):>9.1f}  {target}"
            )
    print(
        f"  decided/s {decided_per_s:.1f} (target >= {TARGET_DECIDED_PER_S:.0f}); "
        f"reference GET/s {reference_per_s:.1f}; {polls / max(len(measured), 1):.1f} polls "
        f"per decided request"
    )
    print(
        f"  ratios: decided/s / GET/s = {decided_per_s / reference_per_s:.3f}; "
        f"p50 / GET p50 = {p50 / ref_p50:.1f}x; p99 / GET p99 = {p99 / ref_p99:.1f}x"
    )
    print(
        f"  lost: {len(lost)} of {len(submitted)} submitted (not decided within "
        f"{LOST_AFTER_S:.0f} s); requests database: {facts['by_status']}, "
        f"{not_final} not final, {facts['documents']} documents; 429s: decide "
        f"{dict(run.warm.throttled + run.load.throttled)}, reference "
        f"{dict(run.reference_throttled)}"
    )
    met = {
        "p50": p50 <= TARGET_P50_MS,
        "p99": p99 <= TARGET_P99_MS,
        "decided/s": decided_per_s >= TARGET_DECIDED_PER_S,
        "0 lost": not lost and not_final == 0,
    }
    print("  targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in met.items()))
    clients = f"{options.clients} clients"
    emit(f"smart request p50 ({clients})", p50, "ms", reference="GET one request p50",
         reference_value=ref_p50, target=f"<= {TARGET_P50_MS:.0f} ms")  # fmt: skip
    emit(f"smart request p99 ({clients})", p99, "ms", reference="GET one request p99",
         reference_value=ref_p99, target=f"<= {TARGET_P99_MS:.0f} ms")  # fmt: skip
    emit(f"smart requests decided/s ({clients})", decided_per_s, "/s",
         reference="GET one request /s", reference_value=reference_per_s,
         target=f">= {TARGET_DECIDED_PER_S:.0f}/s")  # fmt: skip
    emit(f"smart requests lost ({clients})", len(lost) + not_final, "requests",
         reference=f"submitted ({len(submitted)})", reference_value=len(submitted),
         target="0")  # fmt: skip
    print_cpu(
        run.decide_cpu,
        run.reference_cpu,
        decided=len(measured),
        gets=len(run.reference),
        polls=polls / max(len(measured), 1),
    )
    print(f"  load average (1 min) at the end: {os.getloadavg()[0]:.2f}; cpus: {os.cpu_count()}")
    return met["0 lost"]


async def run(stack: RunningStack, options: argparse.Namespace) -> int:
    measured = await measure(stack, options)
    loads = (measured.warm, measured.load, measured.alone)
    submitted = [code for load in loads for code in load.submitted]
    facts = await database_facts(stack, submitted)
    return 0 if report(measured, facts, options) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--citizens", type=int, default=160, help="spread over the clients")
    parser.add_argument("--seconds", type=float, default=25.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--reference-seconds", type=float, default=10.0)
    parser.add_argument("--alone-seconds", type=float, default=5.0, help="then 1 client")
    parser.add_argument("--poll-ms", type=float, default=25.0)
    options = parser.parse_args()
    environment: dict[str, str] = {}
    if options.citizens > 900:
        # every bench citizen asks for an OTP from 127.0.0.1
        environment["PANJEREH_IDENTITY_OTP_PER_IP_LIMIT"] = str(options.citizens + 100)
    print(f"stack environment overrides: {environment or 'none'}")
    with tempfile.TemporaryDirectory(prefix="panjereh-bench-requests-") as scratch:
        began = time.monotonic()
        stack = start_stack(
            Path(scratch) / "var", Path(scratch) / "stack.out", environment=environment
        )
        try:
            print(f"stack ready in {time.monotonic() - began:.1f} s at {stack.gateway}")
            return asyncio.run(run(stack, options))
        except BenchError as exc:
            print(f"error: {exc}")
            return 2
        finally:
            stop_stack(stack)


if __name__ == "__main__":
    raise SystemExit(main())
