"""Start and stop the whole platform as separate processes.

Order: embedded PostgreSQL (unless every service has an external database URL), the embedded
broker (unless ``KAFKA_BOOTSTRAP_SERVERS`` is set), one database per service, topics,
migrations, seed data, then every service and the gateway under uvicorn, then wait for the
gateway's ``/readyz`` and the simulated agencies' own (each agency's consumer group joined:
they are not behind the gateway, which fronts the platform's services only). Ctrl-C or
SIGTERM stops everything in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from panjereh.common.db import ensure_databases
from panjereh.common.messaging.kafka import create_topics
from panjereh.contracts.topics import (
    PLATFORM_TOPICS,
    agency_inquiries,
    agency_replies,
    with_dead_letters,
)
from panjereh.devstack.embedded import (
    EmbeddedKafka,
    EmbeddedPostgres,
    PortInUseError,
    die_with_parent,
    ensure_port_free,
    free_port,
)
from panjereh.devstack.heads import at_head
from panjereh.devstack.keys import stack_keys
from panjereh.devstack.prepare import DONE_PREFIX


@dataclass(frozen=True)
class Component:
    """One FastAPI process of the platform."""

    name: str
    package: str
    env_prefix: str
    port_offset: int
    database: str | None

    @property
    def app(self) -> str:
        return f"{self.package}.main:create_app"


SERVICES: tuple[Component, ...] = (
    Component("catalog", "panjereh.catalog", "PANJEREH_CATALOG_", 1, "catalog"),
    Component("identity", "panjereh.identity", "PANJEREH_IDENTITY_", 2, "identity"),
    Component("requests", "panjereh.requests", "PANJEREH_REQUESTS_", 3, "requests"),
    Component(
        "inquiry-broker", "panjereh.inquiry_broker", "PANJEREH_INQUIRY_BROKER_", 4, "inquiry_broker"
    ),
)
GATEWAY = Component("gateway", "panjereh.gateway", "PANJEREH_GATEWAY_", 0, None)
#: The reference web portal: reached through the gateway (every path it does not own), it
#: calls only the gateway's public API. Offset 6: 5 is the broker's port in the test stacks.
PORTAL = Component("portal", "panjereh.portal", "PANJEREH_PORTAL_", 6, None)
#: Services that may run as several replicas (``--replicas``): every replica of one listens on
#: the service's port (``panjereh.devstack.replica``), so callers keep one URL per service and
#: a replica can join a running stack (the e2e tests add one).
SCALABLE = frozenset({"requests", "inquiry-broker"})


def replica_names(component: Component, replicas: int) -> list[str]:
    """Process names of a component's replicas: its own name, then ``<name>-2``, ..."""
    count = replicas if component.name in SCALABLE else 1
    return [component.name, *(f"{component.name}-{n}" for n in range(2, count + 1))]


@dataclass(frozen=True)
class ExtraProcess:
    """A process beyond the FastAPI components: ``python -m <module>``, no API port.

    With an ``env_prefix`` it serves ``/livez`` and ``/readyz`` on ``<prefix>HEALTH_PORT``
    (``<prefix>HEALTH_HOST``): the stack gives it a free port on 127.0.0.1 (or the one the
    environment names) and waits for its ``/readyz`` before it reports ready.
    """

    name: str
    module: str
    env_prefix: str | None = None


#: The simulated agencies answer inquiries from their topics (started after topics exist);
#: ready once every agency's group has assigned, so a login right after "ready" is answered.
SIMULATORS = ExtraProcess(
    "agency-simulators", "panjereh.agency_simulators", env_prefix="PANJEREH_SIMULATORS_"
)
EXTRAS: tuple[ExtraProcess, ...] = (SIMULATORS,)


def simulated_agency_topics() -> list[str]:
    """``agency.<code>.inquiries`` and ``agency.<code>.replies`` (with the dead letters the
    broker parks replies on) for every simulated agency."""
    from panjereh.agency_simulators.agencies import AGENCIES  # noqa: PLC0415

    codes = sorted(AGENCIES)
    return [
        *(agency_inquiries(code) for code in codes),
        *with_dead_letters([agency_replies(code) for code in codes]),
    ]


@dataclass
class StackConfig:
    var_dir: Path
    port_base: int = 8000
    kafka_port: int = 9092
    environment: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    ready_timeout: float = 90.0
    #: processes of each service in ``SCALABLE``
    replicas: int = 1

    def port(self, component: Component) -> int:
        return self.port_base + component.port_offset


class StackError(RuntimeError):
    pass


def say(message: str) -> None:
    print(message, flush=True)  # noqa: T201 - this is the stack's console


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.env = dict(config.environment)
        # the local stack is dev unless told otherwise: the one place (with the test plugin)
        # that chooses an environment for a process that was not given one
        self.env.setdefault("PANJEREH_ENV", "dev")
        self.postgres: EmbeddedPostgres | None = None
        self.kafka: EmbeddedKafka | None = None
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        #: the ``/readyz`` of each extra process that serves one, by process name
        self.ready_urls: dict[str, str] = {}
        self.log_dir = config.var_dir / "log"
        self.state_file = config.var_dir / "run" / "stack.json"

    # ----------------------------------------------------------------- start
    async def start(self) -> None:
        started = time.monotonic()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        for component in (GATEWAY, *SERVICES, PORTAL):
            ensure_port_free(self.config.port(component), component.name)

        # the two servers start side by side; the processes that need no database (the
        # gateway, the portal, the simulated agencies) start while the services migrate
        await asyncio.gather(self._start_database(), self._start_broker())
        self._set_process_environment()
        self._start_processes([GATEWAY, PORTAL], EXTRAS)
        await self._prepare_services()  # starts each service once its own steps are done
        await self._wait_ready()
        say(f"Panjereh is ready in {time.monotonic() - started:.1f} s")
        gateway = f"http://127.0.0.1:{self.config.port(GATEWAY)}"
        say(f"  gateway      {gateway}")
        say(f"  portal       {gateway}/")
        say(f"  health       {gateway}/readyz")
        for component in SERVICES:
            say(f"  {component.name:<12} http://127.0.0.1:{self.config.port(component)}/docs")
        for name, url in self.ready_urls.items():
            say(f"  {name:<12} {url}")
        say(f"  logs         {self.log_dir}")
        say("Press Ctrl-C to stop.")

    async def _start_database(self) -> None:
        external_server = self.env.get("DATABASE_URL")
        missing = [
            c for c in SERVICES if f"{c.env_prefix}DATABASE_URL" not in self.env and c.database
        ]
        if not missing:
            say("PostgreSQL: every service has its own DATABASE_URL; not starting one")
            return
        if external_server:
            say("PostgreSQL: using DATABASE_URL")
            admin_url = _libpq_url(external_server)
            base = _without_database(external_server)
            urls = {c.name: f"{base}/{c.database}" for c in missing}
        else:
            say("PostgreSQL: starting the embedded server ...")
            begun = time.monotonic()
            self.postgres = EmbeddedPostgres(self.config.var_dir / "postgres")
            await asyncio.to_thread(self.postgres.start)
            say(f"PostgreSQL: ready in {time.monotonic() - begun:.1f} s")
            admin_url = self.postgres.url("postgres", driver="postgresql")
            urls = {c.name: self.postgres.url(c.database or c.name) for c in missing}
        await ensure_databases(admin_url, [c.database for c in missing if c.database])
        for component in missing:
            self.env[f"{component.env_prefix}DATABASE_URL"] = urls[component.name]

    async def _start_broker(self) -> None:
        if self.env.get("KAFKA_BOOTSTRAP_SERVERS"):
            say("Kafka: using KAFKA_BOOTSTRAP_SERVERS; not starting the embedded broker")
            bootstrap = self.env["KAFKA_BOOTSTRAP_SERVERS"]
        else:
            say("Kafka: starting the embedded broker (Tansu, memory storage) ...")
            self.kafka = EmbeddedKafka(self.config.kafka_port, log_path=self.log_dir / "kafka.log")
            await asyncio.to_thread(self.kafka.start)
            bootstrap = self.kafka.bootstrap_servers
            self.env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
            # Tansu rejects InitProducerId: idempotence must be off against it
            self.env.setdefault("PANJEREH_KAFKA_IDEMPOTENCE", "false")
        await create_topics(bootstrap, with_dead_letters(PLATFORM_TOPICS))
        # one partition each: the simulated agencies run in one process, and the broker's
        # replicas still share the replies topics (one topic each, or more); every partition
        # is read again by every idle fetch on Tansu, the agencies' and the broker's replies
        # consumers are most of those fetches
        await create_topics(bootstrap, simulated_agency_topics(), partitions=1)
        say(f"Kafka: ready at {bootstrap}")

    async def _prepare_services(self) -> None:
        """Migrate, then seed, each service: one interpreter per core, side by side; each
        service starts as soon as its own steps are done.

        A service's seed needs only its own schema, so one service's seed data need not wait
        for another's migrations: every interpreter runs its services' migrations first, then
        their seeds (``panjereh.devstack.prepare``), and SQLAlchemy, Alembic and the kernel are
        imported once per interpreter rather than once per step. A database already at its
        migrations' head (a warm start) is not migrated again (:mod:`.heads`).
        """
        migrated = await asyncio.gather(*(self._at_head(c) for c in SERVICES))
        steps = {
            c.name: [
                f"{c.package}.{m}"
                for m in ("migrate", "seed")
                if not (m == "migrate" and up_to_date)
                and importlib.util.find_spec(f"{c.package}.{m}")
            ]
            for c, up_to_date in zip(SERVICES, migrated, strict=True)
        }
        pending = {c.name: set(steps[c.name]) for c in SERVICES}
        by_module = {module: c for c in SERVICES for module in steps[c.name]}
        workers = max(1, min(os.cpu_count() or 1, len(SERVICES)))
        groups = []
        for n in range(workers):
            mine = SERVICES[n::workers]
            groups.append(
                [steps[c.name][0] for c in mine if steps[c.name]]
                + [module for c in mine for module in steps[c.name][1:]]
            )

        def done(module: str) -> None:
            component = by_module.get(module)
            if component is None:
                return
            left = pending[component.name]
            left.discard(module)
            if not left:
                self._start_processes([component], ())

        for component in SERVICES:
            if not pending[component.name]:
                self._start_processes([component], ())
        skipped = [c.name for c, up_to_date in zip(SERVICES, migrated, strict=True) if up_to_date]
        if skipped:
            say(f"Migrations: {', '.join(skipped)} already at head")
        say("Running migrations and seed data ...")
        begun = time.monotonic()
        results = await asyncio.gather(
            *(
                self._run_steps(group, f"prepare-{n}", done)
                for n, group in enumerate(groups, 1)
                if group
            )
        )
        failed = [name for name, code in results if code != 0]
        if failed:
            msg = f"migrations or seed data failed; see {', '.join(failed)} in {self.log_dir}"
            raise StackError(msg)
        say(f"Migrations and seed data: done in {time.monotonic() - begun:.1f} s")

    async def _at_head(self, component: Component) -> bool:
        url = self.env.get(f"{component.env_prefix}DATABASE_URL")
        if not url or not component.database:
            return False
        return await at_head(component.package, _libpq_url(url))

    async def _run_steps(
        self, modules: Sequence[str], name: str, done: Callable[[str], None]
    ) -> tuple[str, int]:
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as output:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "panjereh.devstack.prepare",
                *modules,
                env=self.env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
            )
            assert process.stdout is not None
            marker = f"{DONE_PREFIX} ".encode()
            async for line in process.stdout:
                output.write(line)
                output.flush()
                if line.startswith(marker):
                    done(line[len(marker) :].decode().strip())
            code = await process.wait()
        return log.name, code

    def _set_process_environment(self) -> None:
        upstreams = {
            f"PANJEREH_GATEWAY_{c.name.replace('-', '_').upper()}_URL": (
                f"http://127.0.0.1:{self.config.port(c)}"
            )
            for c in SERVICES
        }
        self.env.update(upstreams)
        # every service verifies access tokens with identity's keys, wherever identity listens
        identity = next(c for c in SERVICES if c.name == "identity")
        self.env.setdefault(
            "PANJEREH_JWKS_URL",
            f"http://127.0.0.1:{self.config.port(identity)}/.well-known/jwks.json",
        )
        # identity asks the inquiry broker (mobile ownership, civil registry) wherever it listens
        broker = next(c for c in SERVICES if c.name == "inquiry-broker")
        self.env.setdefault(
            "PANJEREH_IDENTITY_INQUIRY_BROKER_URL", f"http://127.0.0.1:{self.config.port(broker)}"
        )
        # the requests service reads the catalog (replica bootstrap), gets its token from
        # identity, asks the broker, and writes verify URLs as seen through the gateway
        catalog = next(c for c in SERVICES if c.name == "catalog")
        for name, value in (
            ("CATALOG_URL", f"http://127.0.0.1:{self.config.port(catalog)}"),
            ("IDENTITY_URL", f"http://127.0.0.1:{self.config.port(identity)}"),
            ("INQUIRY_BROKER_URL", f"http://127.0.0.1:{self.config.port(broker)}"),
            ("PUBLIC_BASE_URL", f"http://127.0.0.1:{self.config.port(GATEWAY)}"),
        ):
            self.env.setdefault(f"PANJEREH_REQUESTS_{name}", value)
        # the gateway sends every path it does not own to the portal; the portal calls the API
        # through the gateway only, as a browser or a mobile app does
        gateway_url = f"http://127.0.0.1:{self.config.port(GATEWAY)}"
        self.env.setdefault(
            "PANJEREH_GATEWAY_PORTAL_URL", f"http://127.0.0.1:{self.config.port(PORTAL)}"
        )
        self.env.setdefault("PANJEREH_PORTAL_GATEWAY_URL", gateway_url)

    def _start_processes(
        self, components: Sequence[Component], extras: Sequence[ExtraProcess]
    ) -> None:
        for component in components:
            for name in replica_names(component, self.config.replicas):
                self._spawn(component, name)
        for extra in extras:
            self._spawn_extra(extra)
        self._write_state()

    def _spawn(self, component: Component, name: str) -> None:
        log = (self.log_dir / f"{name}.log").open("ab")
        port = str(self.config.port(component))
        if component.name in SCALABLE:
            # replicas share the port; the module runs uvicorn with the options below
            command = [sys.executable, "-m", "panjereh.devstack.replica", component.app]
            command += ["--port", port]
        else:
            command = [
                sys.executable,
                "-m",
                "uvicorn",
                component.app,
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                port,
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                # each process decides whom to believe about the client's address (the
                # gateway from its trusted proxies, identity from the gateway): uvicorn must
                # not rewrite the peer from a client-written X-Forwarded-For first
                "--no-proxy-headers",
                "--timeout-graceful-shutdown",
                "10",
            ]
        self.processes[name] = subprocess.Popen(  # noqa: S603 - our own command
            command,
            env=self._environment_of(component),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - only sets the death signal
        )
        log.close()

    def _environment_of(self, component: Component) -> dict[str, str]:
        """The stack's environment, with the component's own keys (see
        :mod:`panjereh.devstack.keys`) unless the environment names them or runs production."""
        env = dict(self.env)
        if env.get("PANJEREH_ENV") == "prod":
            return env
        for name, value in stack_keys(self.config.var_dir).items():
            if name.startswith(component.env_prefix):
                env.setdefault(name, value)
        return env

    def _spawn_extra(self, extra: ExtraProcess) -> None:
        env = self.env
        if extra.env_prefix:
            # a free port on 127.0.0.1, unless the environment names the port (or the host)
            port = int(self.env.get(f"{extra.env_prefix}HEALTH_PORT") or 0) or free_port()
            env = {
                f"{extra.env_prefix}HEALTH_HOST": "127.0.0.1",
                **self.env,
                f"{extra.env_prefix}HEALTH_PORT": str(port),
            }
            self.ready_urls[extra.name] = f"http://127.0.0.1:{port}/readyz"
        log = (self.log_dir / f"{extra.name}.log").open("ab")
        self.processes[extra.name] = subprocess.Popen(  # noqa: S603 - our own command
            [sys.executable, "-m", extra.module],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - only sets the death signal
        )
        log.close()

    def _write_state(self) -> None:
        state = {
            "supervisor": os.getpid(),
            "processes": {name: p.pid for name, p in self.processes.items()},
            "broker": self.kafka.process.pid if self.kafka and self.kafka.process else None,
            "postgres_data": str(self.postgres.data_dir) if self.postgres else None,
        }
        self.state_file.write_text(json.dumps(state, indent=2))

    async def _wait_ready(self) -> None:
        """Until the gateway's ``/readyz`` (every service) and each extra process's (the
        simulated agencies: every agency's group joined) have answered 200."""
        waiting = {
            GATEWAY.name: f"http://127.0.0.1:{self.config.port(GATEWAY)}/readyz",
            **self.ready_urls,
        }
        say("Waiting for every service and the simulated agencies to report ready ...")
        deadline = time.monotonic() + self.config.ready_timeout
        last: dict[str, object] = {}
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                self.check_processes()
                names = list(waiting)
                reports = await asyncio.gather(*(_readiness(client, waiting[n]) for n in names))
                for name, report in zip(names, reports, strict=True):
                    if report is True:
                        del waiting[name]
                        last.pop(name, None)
                    else:
                        last[name] = report
                if not waiting:
                    return
                await asyncio.sleep(0.2)
        msg = f"not ready after {self.config.ready_timeout:.0f} s (last report: {last})"
        raise StackError(msg)

    def check_processes(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                msg = (
                    f"{name} exited with code {process.returncode}; "
                    f"see {self.log_dir / (name + '.log')}"
                )
                raise StackError(msg)

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        say("Stopping ...")
        # the gateway first, so no new traffic reaches services that are draining
        order = [
            "gateway",
            "portal",
            *[n for c in reversed(SERVICES) for n in replica_names(c, self.config.replicas)],
            *[e.name for e in EXTRAS],
        ]
        running = [self.processes[n] for n in order if n in self.processes]
        for process in running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.kafka:
            self.kafka.stop()
        if self.postgres:
            self.postgres.stop()
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()
        say("Stopped.")


async def _readiness(client: httpx.AsyncClient, url: str) -> object:
    """True when ``url`` answers 200; otherwise what it reports (its components), if any."""
    try:
        response = await client.get(url)
    except httpx.HTTPError as exc:
        return type(exc).__name__
    if response.status_code == 200:
        return True
    with contextlib.suppress(ValueError, AttributeError):
        return response.json().get("components")
    return response.status_code


def _libpq_url(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _without_database(url: str) -> str:
    parts = urlsplit(url)
    if parts.query:
        msg = "DATABASE_URL with query parameters: give each service its own URL instead"
        raise StackError(msg)
    scheme = "postgresql+asyncpg" if parts.scheme in {"postgresql", "postgres"} else parts.scheme
    return f"{scheme}://{parts.netloc}"


async def run(config: StackConfig) -> int:
    """Run the stack until SIGINT/SIGTERM or until a process dies; the exit code to use."""
    stack = Stack(config)
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop_requested.set)
    code = 0
    try:
        starting = asyncio.create_task(stack.start())
        stopping = asyncio.create_task(stop_requested.wait())
        done, _ = await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting in done:
            starting.result()
            while not stop_requested.is_set():
                stack.check_processes()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop_requested.wait(), timeout=1.0)
        else:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, StackError):
                await starting
        stopping.cancel()
    except (StackError, PortInUseError) as exc:
        say(f"error: {exc}")
        code = 1
    finally:
        await asyncio.to_thread(stack.stop)
    return code


def main_run(args: Sequence[str] | None = None) -> int:
    from panjereh.devstack.cli import parse  # noqa: PLC0415

    config = parse(args)
    return asyncio.run(run(config))
