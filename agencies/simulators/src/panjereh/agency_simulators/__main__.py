"""``python -m panjereh.agency_simulators [agency codes...]``: run simulated agencies.

With no codes, every simulated agency runs. Settings come from the environment (see
:class:`SimulatorSettings`) and can be overridden by options.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from panjereh.agency_sdk import KafkaSettings
from panjereh.agency_sdk.host import AgencyHost
from panjereh.agency_simulators.agencies import AGENCIES, Faults, build
from panjereh.agency_simulators.health import serve_health

logger = logging.getLogger("panjereh.agency_simulators")

#: How long a stopped host may take to close its Kafka clients before it is cancelled.
_STOP_WAIT_SECONDS = 10.0


class SimulatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PANJEREH_SIMULATORS_", extra="ignore")

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
    )
    kafka_idempotence: bool = Field(
        default=True,
        validation_alias=AliasChoices("PANJEREH_KAFKA_IDEMPOTENCE", "kafka_idempotence"),
    )
    # the platform-wide Kafka security variables every Kafka client honours
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        validation_alias=AliasChoices("KAFKA_SECURITY_PROTOCOL", "kafka_security_protocol"),
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="SCRAM-SHA-512",
        validation_alias=AliasChoices("KAFKA_SASL_MECHANISM", "kafka_sasl_mechanism"),
    )
    kafka_sasl_username: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_SASL_USERNAME", "kafka_sasl_username"),
    )
    kafka_sasl_password: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_SASL_PASSWORD", "kafka_sasl_password"),
    )
    kafka_ssl_cafile: str | None = Field(
        default=None, validation_alias=AliasChoices("KAFKA_SSL_CAFILE", "kafka_ssl_cafile")
    )
    #: Port of ``/livez`` and ``/readyz`` (0: no health endpoint). ``make run`` gives one and
    #: waits for ``/readyz`` (every agency's group joined) before it reports ready.
    health_port: int = Field(default=0, ge=0, le=65535)
    #: Where the probes listen: every interface of the pod, 127.0.0.1 under ``make run``.
    health_host: str = "0.0.0.0"  # noqa: S104 - the pod's network only
    #: Longest a Kafka fetch may wait for inquiries. Tansu does not wake a held fetch, so this
    #: bounds the latency each inquiry waits; shorter costs idle CPU (7 agencies at 25 ms:
    #: a few percent of a core, at 10 ms about 15 % plus as much in the broker).
    fetch_max_wait_ms: int = Field(default=25, ge=0, le=500)
    #: The fetch wait once no inquiry came for a few seconds (it backs off from
    #: ``fetch_max_wait_ms`` to this): the first inquiry after a quiet spell waits up to this
    #: long on Tansu (about a third of it on average), and the idle agencies cost one fetch
    #: per wait, all of them together (one fetch reads every agency's topic). An inquiry to
    #: any agency tightens the wait for all of them.
    idle_fetch_max_wait_ms: int = Field(default=500, ge=0, le=10_000)
    latency_ms: float = Field(default=0.0, ge=0)
    jitter_ms: float = Field(default=0.0, ge=0)
    failure_rate: float = Field(default=0.0, ge=0, le=1)
    seed: int | None = None


def parse(args: Sequence[str] | None, settings: SimulatorSettings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m panjereh.agency_simulators", description=__doc__
    )
    parser.add_argument(
        "agencies", nargs="*", metavar="AGENCY", help=f"any of {', '.join(sorted(AGENCIES))}"
    )
    parser.add_argument("--latency-ms", type=float, default=settings.latency_ms)
    parser.add_argument("--jitter-ms", type=float, default=settings.jitter_ms)
    parser.add_argument("--failure-rate", type=float, default=settings.failure_rate)
    parser.add_argument("--seed", type=int, default=settings.seed)
    options = parser.parse_args(args)
    unknown = sorted(set(options.agencies) - set(AGENCIES))
    if unknown:
        parser.error(f"no simulated agency named {', '.join(unknown)}")
    return options


async def run(
    codes: Sequence[str],
    *,
    kafka: KafkaSettings,
    faults: Faults,
    health_port: int = 0,
    health_host: str = "0.0.0.0",  # noqa: S104 - the pod's network only
) -> None:
    agencies = [build(code, kafka=kafka, faults=faults) for code in codes]
    # one identity plays every simulated agency: one fetch reads all their topics instead of
    # one fetch per agency (each agency is still a member of its own group and commits there)
    host = AgencyHost(agencies, kafka=kafka, client_id="agency-simulators")
    health = (
        await serve_health(agencies, port=health_port, host=health_host) if health_port else None
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    serving = asyncio.create_task(host.run(), name="agencies")
    stopping = asyncio.create_task(stop.wait())
    logger.info("simulated agencies running", extra={"agencies": list(codes)})
    try:
        await asyncio.wait([serving, stopping], return_when=asyncio.FIRST_COMPLETED)
    finally:
        host.stop()
        stopping.cancel()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        # the host returns within one poll once stopped; not while it is still connecting
        await asyncio.wait([serving], timeout=_STOP_WAIT_SECONDS)
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        if health is not None:
            health.close()
            await health.wait_closed()
    if not serving.cancelled() and serving.exception() is not None:
        raise serving.exception()  # type: ignore[misc]


def main(args: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    settings = SimulatorSettings()
    options = parse(args, settings)
    codes = options.agencies or sorted(AGENCIES)
    password = settings.kafka_sasl_password
    kafka = KafkaSettings(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        idempotence=settings.kafka_idempotence,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        idle_fetch_max_wait_ms=settings.idle_fetch_max_wait_ms,
        security_protocol=settings.kafka_security_protocol,
        sasl_mechanism=settings.kafka_sasl_mechanism,
        sasl_username=settings.kafka_sasl_username,
        sasl_password=password.get_secret_value() if password else None,
        ssl_cafile=settings.kafka_ssl_cafile,
    )
    faults = Faults(
        latency_ms=options.latency_ms,
        jitter_ms=options.jitter_ms,
        failure_rate=options.failure_rate,
        seed=options.seed,
    )
    main_task = run(
        codes,
        kafka=kafka,
        faults=faults,
        health_port=settings.health_port,
        health_host=settings.health_host,
    )
    try:
        import uvloop  # noqa: PLC0415 - optional: a faster event loop where it installs
    except ImportError:
        asyncio.run(main_task)
    else:
        uvloop.run(main_task)
    return 0


if __name__ == "__main__":
    sys.exit(main())
