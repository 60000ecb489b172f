"""Build workloads' settings and entry points from the environment Kubernetes would give them.

Run as ``python -m tests.deploy.boot <plan.json>``: the plan lists workloads, each with the
exact environment its container receives and the entry point its command names. For each,
the process environment is replaced by that environment, the component's real ``Settings``
are built and its app (or Job entry point) is constructed, without serving, migrating or
connecting to anything. One JSON line per workload goes to stdout.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url


def _settings(package: str) -> Any:
    return importlib.import_module(f"{package}.config").Settings()


def _database(settings: Any) -> dict[str, Any] | None:
    """The connection parameters the database driver ends up with (libpq variables included)."""
    variable = f"{settings.model_config.get('env_prefix', '')}DATABASE_URL"
    if variable not in os.environ:
        return None  # a process without a database (the gateway)
    return _connection(settings.database_url)


def _connection(url_text: str) -> dict[str, Any]:
    url = make_url(url_text)
    # asyncpg, like libpq, takes the password from PGPASSWORD when the URL has none
    password = url.password if url.password is not None else os.environ.get("PGPASSWORD")
    return {
        "user": url.username or os.environ.get("PGUSER"),
        "password": None if password is None else str(password),
        "host": url.host,
        "port": url.port,
        "database": url.database,
    }


def _boot(entry: dict[str, Any]) -> dict[str, Any]:
    kind = entry["kind"]
    result: dict[str, Any] = {}
    if kind == "factory":
        module, _, attribute = entry["target"].partition(":")
        factory = getattr(importlib.import_module(module), attribute)
        factory()  # what `uvicorn module:attribute --factory` calls
        settings = _settings(module.rsplit(".", 1)[0])
        result["database"] = _database(settings)
        listen = getattr(settings, "listen_database_url", "")
        if listen:  # the inquiry broker's direct LISTEN session
            result["listen"] = _connection(listen)
    elif kind == "migrate":
        from alembic.script import ScriptDirectory  # noqa: PLC0415

        from panjereh.common.migrations import alembic_config  # noqa: PLC0415

        package = entry["target"].removesuffix(".migrate")
        assert importlib.util.find_spec(entry["target"]) is not None
        settings = _settings(package)  # what the migrate module reads first
        heads = ScriptDirectory.from_config(
            alembic_config(package, settings.database_url)
        ).get_heads()
        assert heads, f"{package} has no migrations"
        result["database"] = _database(settings)
    elif kind == "simulators":
        simulators = importlib.import_module("panjereh.agency_simulators.__main__")
        settings = simulators.SimulatorSettings()
        simulators.parse(entry["args"], settings)
    elif kind == "schema-gate":
        spec = importlib.util.spec_from_file_location("schema_gate", entry["target"])
        assert spec is not None
        assert spec.loader is not None
        gate = importlib.util.module_from_spec(spec)
        sys.modules["schema_gate"] = gate  # its dataclasses look their module up
        spec.loader.exec_module(gate)
        plan = gate.plan(entry["args"], os.environ)
        result["database"] = _connection(plan.database_url)
    else:
        msg = f"no known way to start {entry['target']!r}"
        raise ValueError(msg)
    return result


def main() -> None:
    plan = json.loads(Path(sys.argv[1]).read_text())
    for workload in plan:
        os.environ.clear()
        os.environ.update(workload["env"])
        try:
            outcome = {"name": workload["name"], "ok": True, **_boot(workload["entry"])}
        except BaseException as exc:  # every failure, SystemExit included, is the finding
            lines = traceback.format_exception_only(type(exc), exc)
            outcome = {"name": workload["name"], "ok": False, "error": "".join(lines).strip()}
        sys.stdout.write(json.dumps(outcome) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
