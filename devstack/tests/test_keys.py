"""The local stack keeps the inquiry broker's keys with its data, for every start and replica."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from panjereh.common import jwk
from panjereh.devstack.keys import stack_keys
from panjereh.devstack.stack import SERVICES, Stack, StackConfig

SIGNING = "PANJEREH_INQUIRY_BROKER_SIGNING_PRIVATE_KEY"
CHAIN = "PANJEREH_INQUIRY_BROKER_AUDIT_CHAIN_KEY"
BROKER = next(c for c in SERVICES if c.name == "inquiry-broker")
CATALOG = next(c for c in SERVICES if c.name == "catalog")


def test_the_keys_are_made_once_and_read_back_at_every_start(tmp_path: Path) -> None:
    first = stack_keys(tmp_path / "var")
    assert set(first) == {SIGNING, CHAIN}
    assert jwk.public_jwk(jwk.load_private_key(first[SIGNING]))["crv"] == "P-256"
    assert len(first[CHAIN]) >= 32
    assert stack_keys(tmp_path / "var") == first
    # another data directory, other keys
    assert stack_keys(tmp_path / "other") != first


def test_only_the_owner_reads_the_file(tmp_path: Path) -> None:
    stack_keys(tmp_path)
    mode = stat.S_IMODE((tmp_path / "keys.json").stat().st_mode)
    assert mode == 0o600


def test_a_key_missing_from_the_file_is_added_and_the_others_are_kept(tmp_path: Path) -> None:
    kept = stack_keys(tmp_path)
    (tmp_path / "keys.json").write_text(json.dumps({CHAIN: kept[CHAIN]}))
    again = stack_keys(tmp_path)
    assert again[CHAIN] == kept[CHAIN]
    assert again[SIGNING] != kept[SIGNING]
    assert stack_keys(tmp_path) == again


def stack(tmp_path: Path, **environment: str) -> Stack:
    return Stack(StackConfig(var_dir=tmp_path, environment=environment))


def test_the_broker_gets_the_keys_and_no_other_service_does(tmp_path: Path) -> None:
    keys = stack_keys(tmp_path)
    broker = stack(tmp_path)._environment_of(BROKER)
    assert broker[SIGNING] == keys[SIGNING]
    assert broker[CHAIN] == keys[CHAIN]
    catalog = stack(tmp_path)._environment_of(CATALOG)
    assert SIGNING not in catalog
    assert CHAIN not in catalog


def test_keys_the_environment_names_win(tmp_path: Path) -> None:
    broker = stack(tmp_path, **{CHAIN: "from-the-environment"})._environment_of(BROKER)
    assert broker[CHAIN] == "from-the-environment"


def test_a_stack_told_to_run_production_is_given_no_dev_key(tmp_path: Path) -> None:
    broker = stack(tmp_path, PANJEREH_ENV="prod")._environment_of(BROKER)
    assert SIGNING not in broker
    assert CHAIN not in broker
    assert not (tmp_path / "keys.json").exists()
