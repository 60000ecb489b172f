"""Complete logins through the gateway, the whole platform as separate processes.

Starts the stack as ``make run`` does (``devstack.testing.start_stack``, in a temporary
directory). First the stack sits idle for ``--idle-seconds``: the CPU each process burns with no
traffic at all (consumers, relays and sweepers waiting). Then complete logins, each with a
fresh citizen (national code and mobile never used before, so every login is a first login):
``POST /api/v1/auth/otp`` (identity asks the mobile registry through the inquiry broker), the
code read from the dev SMS outbox (polled every ``--poll-ms``), ``POST /api/v1/auth/otp/verify``
(identity asks the civil registry through the broker, registers the citizen and signs in).
Closed loops of 1 client, then ``--clients`` concurrent clients, for ``--seconds`` each.
Then, for ``--returning-seconds`` at ``--clients`` clients, returning logins: citizens who
signed in earlier in the run ask again (the mobile registry is asked, the civil registry is
not, and the citizen is signed in, not registered). The mobile's resend cooldown is set to 0
for this stack so that a citizen can come back within the run; printed.

Measured: logins per second, p50/p99 of a complete login (OTP request → tokens), and the CPU
seconds per login of every process of the stack (from ``/proc/<pid>/stat``: the components in
``stack.json``, PostgreSQL's backends, the Kafka broker, this client, the rest of the machine).
The reference, at the same concurrency: an authenticated ``GET /api/v1/me`` (gateway →
identity → PostgreSQL, no Kafka, no inquiry), as req/s and p99, and the ratios.

Targets (issue 17): >= 50 logins/s at 20 clients with p99 <= 500 ms; the idle stack <= 5 % of
one core.

The gateway's per-address limits and identity's per-IP OTP limit would otherwise refuse one
address asking that many codes: both are raised for this stack only, and printed.

    .venv/bin/python bench/login.py [--clients 20] [--seconds 20] [--idle-seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from benchkit import emit
from requests_e2e import BenchError, CpuWindow, ProcessGroups, percentile

from panjereh.common.http import ServiceClient, ServiceResponse
from panjereh.contracts.identifiers import complete_national_code
from panjereh.devstack.testing import RunningStack, start_stack, stop_stack

TARGET_LOGINS_PER_S = 50.0
TARGET_P99_MS = 500.0
TARGET_IDLE_SHARE = 0.05  # of one core, the whole stack
#: this bench's citizens: valid checksums, no simulator special case, never reused in a run
CITIZENS = ((complete_national_code(f"27{n:07d}"), f"0935{n:07d}") for n in itertools.count(1))


#: how many codes each mobile has received so far in this run (its outbox lists them all)
DELIVERED: Counter[str] = Counter()

#: A login's steps, as the citizen waits for them.
STEPS = (
    "- OTP request (ownership inq.)",
    "- code in the dev SMS outbox",
    "- verify (civil-registry inq.)",
)


@dataclass
class Load:
    """What one closed-loop phase measured."""

    latencies: list[float] = field(default_factory=list)
    #: each step's share of every login, in seconds (OTP request, code delivered, verify)
    steps: dict[str, list[float]] = field(default_factory=lambda: {name: [] for name in STEPS})
    polls: int = 0
    retried: Counter[str] = field(default_factory=Counter)
    headers: list[dict[str, str]] = field(default_factory=list)
    #: who completed a login, in order: the returning phase's citizens
    signed_in: list[tuple[str, str]] = field(default_factory=list)


async def one_login(
    client: ServiceClient, citizens: Iterator[tuple[str, str]], load: Load, poll_s: float
) -> None:
    national_code, mobile = next(citizens)
    started = time.monotonic()
    for _ in range(20):
        challenge = await client.post_json(
            "/api/v1/auth/otp", {"national_code": national_code, "mobile": mobile}
        )
        # 503: the registry did not answer in time; nothing was recorded, asking again is safe
        if challenge.status_code not in (429, 503):
            break
        load.retried[f"otp {challenge.status_code}"] += 1
        await asyncio.sleep(0.2)
    if challenge.status_code != 202:
        msg = f"OTP refused: {challenge.status_code} {text(challenge)}"
        raise BenchError(msg)
    requested = time.monotonic()
    deadline = time.monotonic() + 10
    while True:
        load.polls += 1
        outbox = await client.request("GET", f"/api/v1/dev/sms-outbox?mobile={quote(mobile)}")
        items = outbox.json().get("items") if outbox.status_code == 200 else None
        if items and len(items) > DELIVERED[mobile]:  # newest first: a returning one's too
            DELIVERED[mobile] = len(items)
            break
        if time.monotonic() > deadline:
            msg = "no OTP reached the dev outbox within 10 s"
            raise BenchError(msg)
        await asyncio.sleep(poll_s)
    delivered = time.monotonic()
    for _ in range(20):
        verified = await client.post_json(
            "/api/v1/auth/otp/verify",
            {"challenge_id": challenge.json()["challenge_id"], "code": items[0]["tokens"][0]},
        )
        # 503: the civil registry did not answer in time; the code stays valid, send it again
        if verified.status_code != 503:
            break
        load.retried["verify 503"] += 1
        await asyncio.sleep(0.2)
    if verified.status_code != 200:
        msg = f"OTP not verified: {verified.status_code} {text(verified)}"
        raise BenchError(msg)
    done = time.monotonic()
    load.latencies.append(done - started)
    load.signed_in.append((national_code, mobile))
    for name, seconds in zip(
        STEPS, (requested - started, delivered - requested, done - delivered), strict=True
    ):
        load.steps[name].append(seconds)
    if len(load.headers) < 64:
        load.headers.append({"Authorization": f"Bearer {verified.json()['access_token']}"})


def text(response: ServiceResponse) -> str:
    return response.content.decode(errors="replace")


async def login_loop(
    client: ServiceClient,
    citizens: Iterator[tuple[str, str]],
    load: Load,
    *,
    until: float,
    poll_s: float,
) -> None:
    while time.monotonic() < until:
        await one_login(client, citizens, load, poll_s)


async def reference_loop(
    client: ServiceClient, headers: dict[str, str], timings: list[float], *, until: float
) -> None:
    while time.monotonic() < until:
        began = time.monotonic()
        response = await client.request("GET", "/api/v1/me", headers=headers)
        if response.status_code == 429:
            await asyncio.sleep(float(response.header("Retry-After") or 0.1))
            continue
        if response.status_code != 200:
            msg = f"GET /api/v1/me: {response.status_code} {text(response)}"
            raise BenchError(msg)
        timings.append(time.monotonic() - began)


@dataclass
class Phase:
    clients: int
    load: Load
    cpu: CpuWindow
    reference: list[float]
    reference_cpu: CpuWindow
    #: "" for first logins, "returning " for returning ones (in the figures' names)
    kind: str = ""


async def phase(
    client: ServiceClient,
    groups: ProcessGroups,
    clients: int,
    options: argparse.Namespace,
    *,
    citizens: Iterator[tuple[str, str]] = CITIZENS,
    seconds: float | None = None,
    kind: str = "",
) -> Phase:
    poll_s = options.poll_ms / 1000
    warm = Load()
    until = time.monotonic() + options.warmup
    await asyncio.gather(
        *(login_loop(client, citizens, warm, until=until, poll_s=poll_s) for _ in range(clients))
    )
    load, cpu = Load(), CpuWindow(groups)
    cpu.start()
    until = time.monotonic() + (options.seconds if seconds is None else seconds)
    await asyncio.gather(
        *(login_loop(client, citizens, load, until=until, poll_s=poll_s) for _ in range(clients))
    )
    cpu.stop()
    load.signed_in[:0] = warm.signed_in
    tokens = warm.headers + load.headers
    reference: list[float] = []
    reference_cpu = CpuWindow(groups)
    reference_cpu.start()
    until = time.monotonic() + options.reference_seconds
    await asyncio.gather(
        *(
            reference_loop(client, tokens[n % len(tokens)], reference, until=until)
            for n in range(clients)
        )
    )
    reference_cpu.stop()
    return Phase(clients, load, cpu, reference, reference_cpu, kind)


def print_phase(result: Phase) -> dict[str, bool]:
    load, window = result.load, result.cpu
    logins = len(load.latencies)
    per_s = logins / window.seconds
    ms = [t * 1000 for t in load.latencies]
    ref_ms = [t * 1000 for t in result.reference]
    ref_per_s = len(ref_ms) / result.reference_cpu.seconds
    p50, p99 = statistics.median(ms), percentile(ms, 0.99)
    ref_p50, ref_p99 = statistics.median(ref_ms), percentile(ref_ms, 0.99)
    what = "returning logins" if result.kind else "first logins"
    print(f"\n{what}, {result.clients} client(s), closed loop, {window.seconds:.1f} s measured")
    print(f"  {'':<34}{'n':>7}{'per s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for name, values, rate in (
        ("complete login", ms, per_s),
        ("reference: GET /api/v1/me", ref_ms, ref_per_s),
    ):
        print(
            f"  {name:<34}{len(values):>7}{rate:>9.1f}{statistics.median(values):>9.1f}"
            f"{percentile(values, 0.99):>9.1f}{max(values):>9.1f}"
        )
    for name in STEPS:  # where a login waits
        step_ms = [t * 1000 for t in load.steps[name]]
        print(
            f"  {name:<34}{len(step_ms):>7}{'':>9}{statistics.median(step_ms):>9.1f}"
            f"{percentile(step_ms, 0.99):>9.1f}{max(step_ms):>9.1f}"
        )
    print(
        f"  ratios: logins/s / GET/s = {per_s / ref_per_s:.3f}; p50 / GET p50 = "
        f"{p50 / ref_p50:.1f}x; p99 / GET p99 = {p99 / ref_p99:.1f}x; "
        f"{load.polls / max(logins, 1):.1f} outbox polls per login; retried {dict(load.retried)}"
    )
    print("  CPU per login (ms; the outbox polls included) and per GET, per process:")
    print(f"    {'process':<30}{'CPU s':>8}{'% core':>8}{'ms/login':>10}{'ms/GET':>8}")
    for name in sorted(window.used, key=lambda n: -window.used[n]):
        used, ref = window.used[name], result.reference_cpu.used.get(name, 0.0)
        print(
            f"    {name:<30}{used:>8.2f}{100 * used / window.seconds:>8.0f}"
            f"{1000 * used / max(logins, 1):>10.2f}{1000 * ref / max(len(ref_ms), 1):>8.2f}"
        )
    total = sum(window.used.values())
    stack = total - sum(window.used.get(name, 0.0) for name in NOT_THE_STACK)
    for name, used in (("all", total), ("the stack (no client, no rest)", stack)):
        print(
            f"    {name:<30}{used:>8.2f}{100 * used / window.seconds:>8.0f}"
            f"{1000 * used / max(logins, 1):>10.2f}"
        )
    at = f"{result.clients} client{'s' if result.clients > 1 else ''}"
    kind = result.kind
    # the targets are for first logins, the heavier kind (two inquiries and a registration)
    targeted = result.clients > 1 and not kind
    emit(
        f"{kind}logins/s, {at}",
        per_s,
        "1/s",
        reference="GET /api/v1/me per s",
        reference_value=ref_per_s,
        target=f">= {TARGET_LOGINS_PER_S:.0f}" if targeted else None,
    )
    emit(
        f"{kind}login p99, {at}",
        p99,
        "ms",
        reference="GET /api/v1/me p99",
        reference_value=ref_p99,
        target=f"<= {TARGET_P99_MS:.0f} ms" if targeted else None,
    )
    for name in ("inquiry-broker", "identity"):
        emit(
            f"{name} CPU per {kind}login, {at}",
            1000 * window.used.get(name, 0.0) / max(logins, 1),
            "ms",
            reference=f"{name} CPU per GET /api/v1/me",
            reference_value=1000 * result.reference_cpu.used.get(name, 0.0) / max(len(ref_ms), 1),
        )
    if not targeted:
        return {}
    return {
        f"{result.clients} clients: logins/s": per_s >= TARGET_LOGINS_PER_S,
        f"{result.clients} clients: p99": p99 <= TARGET_P99_MS,
    }


#: the rows of the CPU table that are not the platform
NOT_THE_STACK = ("bench client (this process)", "rest of the machine")


def print_idle(window: CpuWindow) -> bool:
    print(f"\nidle, no traffic, {window.seconds:.1f} s: CPU per process (% of one core)")
    stack = 0.0
    for name in sorted(window.used, key=lambda n: -window.used[n]):
        used = window.used[name]
        if name not in NOT_THE_STACK:
            stack += used
        print(f"    {name:<30}{used:>8.2f} s{100 * used / window.seconds:>8.1f} %")
    share = stack / window.seconds
    emit(
        "idle stack CPU",
        100 * share,
        "% of a core",
        target=f"<= {100 * TARGET_IDLE_SHARE:.0f} %",
    )
    print(
        f"  the stack: {100 * share:.1f} % of one core (target <= {100 * TARGET_IDLE_SHARE:.0f} %)"
    )
    return share <= TARGET_IDLE_SHARE


async def run(stack: RunningStack, options: argparse.Namespace) -> None:
    groups = ProcessGroups.of(stack)
    met: dict[str, bool] = {}
    if options.idle_seconds > 0:
        await asyncio.sleep(options.settle_seconds)  # start-up work (consumer joins) settles
        idle = CpuWindow(groups)
        idle.start()
        await asyncio.sleep(options.idle_seconds)
        idle.stop()
        met["idle <= 5 %"] = print_idle(idle)
    # the kernel's HTTP/1.1 pool (the one services call each other with): the load generator
    # shares the 2 cores with the stack it measures, so it should cost as little as it can
    client = ServiceClient(
        "bench", stack.gateway, timeout=30.0, max_connections=options.clients * 2
    )
    signed_in: list[tuple[str, str]] = []
    try:
        for clients in sorted({1, options.clients}):
            first = await phase(client, groups, clients, options)
            met.update(print_phase(first))
            signed_in += first.load.signed_in
        if options.returning_seconds > 0:
            # each citizen of the run comes back, in the order they first signed in
            returning = await phase(
                client,
                groups,
                options.clients,
                options,
                citizens=itertools.cycle(signed_in),
                seconds=options.returning_seconds,
                kind="returning ",
            )
            print_phase(returning)
    finally:
        await client.aclose()
    print(
        f"\ntargets (>= {TARGET_LOGINS_PER_S:.0f} logins/s, p99 <= {TARGET_P99_MS:.0f} ms at "
        f"{options.clients} clients; idle <= {100 * TARGET_IDLE_SHARE:.0f} %): "
        + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in met.items())
    )
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}; cpus: {os.cpu_count()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured, each phase")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--reference-seconds", type=float, default=5.0)
    parser.add_argument("--idle-seconds", type=float, default=20.0, help="0: skip")
    parser.add_argument("--settle-seconds", type=float, default=5.0)
    parser.add_argument("--poll-ms", type=float, default=10.0, help="dev SMS outbox polling")
    parser.add_argument(
        "--returning-seconds", type=float, default=10.0, help="returning logins; 0: skip"
    )
    options = parser.parse_args()
    environment = {
        # one address asks every code: the per-address limits are sized for people
        "PANJEREH_IDENTITY_OTP_PER_IP_LIMIT": "1000000",
        "PANJEREH_GATEWAY_RATE_LIMIT_IP_FACTOR": "100000",
    }
    if options.returning_seconds > 0:
        # a returning citizen comes back seconds after the first login, not a minute
        environment["PANJEREH_IDENTITY_OTP_RESEND_COOLDOWN_SECONDS"] = "0"
    print(f"stack environment overrides: {environment}")
    # the interpreter's build moves every CPU figure (see docs/profiling.md)
    print(f"python: {sys.version.split()[0]} at {os.path.realpath(sys.executable)}")
    with tempfile.TemporaryDirectory(prefix="panjereh-bench-login-") as scratch:
        began = time.monotonic()
        stack = start_stack(
            Path(scratch) / "var", Path(scratch) / "stack.out", environment=environment
        )
        try:
            print(f"stack ready in {time.monotonic() - began:.1f} s at {stack.gateway}")
            asyncio.run(run(stack, options))
        except BenchError as exc:
            print(f"error: {exc}")
            return 2
        finally:
            stop_stack(stack)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
