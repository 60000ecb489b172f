"""Two replicas of the requests service and of the inquiry broker.

The stack runs each of them through ``panjereh.devstack.replica``: every replica of a service
listens on the service's one port (``SO_REUSEPORT``; the kernel spreads connections over them),
as ``make run --replicas 2`` starts them. This module adds a second replica of each to the e2e
session's platform (started exactly as the first), runs the journeys of ``test_journeys`` on
it, then kills (``kill -9``) one replica of each service in the middle of smart requests: the
other replicas keep accepting, take over the dead one's leased steps, and every request is
final, decided once. The added replicas are stopped at the end of the module.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from panjereh.devstack.testing import (
    RunningStack,
    add_replica,
    kill_component,
    restart_component,
    stop_component,
)
from tests.e2e.platform_api import People as JourneyPeople
from tests.e2e.test_journeys import (  # the journeys, run again with two replicas
    TestAgencyInquiries,
    TestCitizenJourneys,
    TestNewSmartCard,
    gateway_client,
    ledger,
)
from tests.e2e.test_platform_faults import (
    CRIMINAL_RECORD_CERTIFICATE,
    FINAL,
    Load,
    People,
    Platform,
    assert_decided_once,
    keep_submitting,
    only_in_flight_failed,
    until,
)
from tests.e2e.test_requests_faults import wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("second_replicas")]

__all__ = [
    "TestAgencyInquiries",
    "TestCitizenJourneys",
    "TestNewSmartCard",
    "gateway_client",
    "ledger",
]

SCALED = ("requests", "inquiry-broker")


@pytest.fixture(scope="module")
def second_replicas(platform: RunningStack) -> Iterator[list[str]]:
    added = []
    try:
        for name in SCALED:
            add_replica(platform, name, f"{name}-2")
            added.append(f"{name}-2")
        # the new replicas are ready (their own /readyz, on the shared port, cannot tell them
        # apart): wait for their startup line in their logs
        deadline = time.monotonic() + 60
        for name in added:
            log = platform.var_dir / "log" / f"{name}.log"
            while "Application startup complete" not in log.read_text(errors="replace"):
                assert time.monotonic() < deadline, f"{name} did not start"
                time.sleep(0.2)
        yield added
    finally:
        for name in added:
            if name in platform.restarted:
                stop_component(platform, name)


@pytest.fixture(scope="module")
def people() -> JourneyPeople:
    return JourneyPeople("2760", "093676")


class TestTwoReplicas:
    def test_two_processes_of_each_on_one_port(
        self, platform: RunningStack, second_replicas: list[str]
    ) -> None:
        assert second_replicas == ["requests-2", "inquiry-broker-2"]
        processes = platform.state()["processes"]
        assert isinstance(processes, dict)
        assert {"requests", "requests-2", "inquiry-broker", "inquiry-broker-2"} <= set(processes)
        assert len({processes[name] for name in processes}) == len(processes)
        ready = httpx.get(f"{platform.gateway}/readyz", timeout=10).json()
        assert set(ready["components"].values()) == {"ready"}

    async def test_one_replica_of_each_killed_mid_load_and_every_request_final_once(
        self, platform: RunningStack
    ) -> None:
        checked = Platform(platform)
        async with httpx.AsyncClient(
            base_url=platform.gateway, timeout=15.0, limits=httpx.Limits(max_connections=40)
        ) as client:
            citizens = await People("2770", "0936770").log_in(client, 8)
            load = Load()
            tasks = await keep_submitting(
                client, citizens, CRIMINAL_RECORD_CERTIFICATE, load, each=5, interval=0.3
            )
            killed = []
            try:
                await until(lambda: len(load.accepted) >= 15, within=30, what="submissions")
                for name in SCALED:
                    killed.append(await asyncio.to_thread(kill_component, platform, name))
                killed_at = time.monotonic()
                at_kill = await checked.statuses(list(load.accepted.values()))
                accepted_at_kill = len(load.accepted)
                # the surviving replicas keep the platform serving while the others are down
                await asyncio.sleep(3.0)
                accepted_while_down = len(load.accepted) - accepted_at_kill
            finally:
                for dead in killed:
                    restart_component(platform, dead.name, dead.launch)
            await wait_ready(client, within=60)
            per_citizen = await asyncio.gather(*tasks)
            codes = [code for codes in per_citizen for code in codes]
            statuses = await checked.wait_final(codes, within=60)
            settled = time.monotonic() - killed_at
            facts = await checked.facts(codes)
            asked = await checked.inquiries(codes)
            # the dead replica's partitions of the replies topics wait for the group to see it
            # gone (its session timeout): inquiries whose replies land there meanwhile, asked
            # before or just after the kill, time out
            failed = await only_in_flight_failed(
                client, load, statuses, at_kill, at_most=None, only_before_kill=False
            )
        not_final = sum(status not in FINAL for status in at_kill.values())
        print(
            f"\n{len(at_kill)} accepted at the kill ({not_final} not final), "
            f"{accepted_while_down} more in the 3 s the killed replicas were down; "
            f"{len(codes)} in all, {Counter(statuses.values())} {settled:.1f} s after the kill; "
            f"{len(failed)} failed (an inquiry timed out); retried {dict(load.refused)}"
        )
        assert not_final >= 3, at_kill
        assert accepted_while_down >= 3
        assert len(codes) == 40
        assert len(statuses) == len(codes)
        assert_decided_once(facts, codes)
        # decided (approve or reject) once, with its event; failed ones have neither
        decided = [row for row in facts if row["status"] == "approved"]
        assert {row["decided_events"] for row in decided} == {1}
        assert {row["documents"] for row in decided} == {1}
        assert set(asked.values()) == {1}, [k for k, n in asked.items() if n > 1]
