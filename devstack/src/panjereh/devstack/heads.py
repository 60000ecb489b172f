"""Whether a service's database is already at its migrations' head, without Alembic.

The local stack migrates every service at each start; on a warm start nothing is left to do,
yet each migration step imported Alembic and the service's models first (seconds of CPU on a
small machine). This reads the revisions the migration scripts declare and the one the
database records, and says "at head" only when both are known and equal. Anything it cannot
read (another way of declaring a revision, a merge of branches, no version table yet) counts
as "not at head", and the migration runs as before: the check may only skip work, never
decide a schema.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import asyncpg

#: Alembic's version table, in the service's own schema (``panjereh.common.migrations``).
VERSION_TABLE = "alembic_version"


def _literal(node: ast.expr | None) -> object:
    try:
        return ast.literal_eval(node) if node is not None else None
    except ValueError:
        return ...


def _declared(path: Path) -> tuple[str, tuple[str, ...]] | None:
    """``(revision, down_revisions)`` of one migration script, read from its text."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    values: dict[str, object] = {}
    for statement in tree.body:
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            values[statement.target.id] = _literal(statement.value)
        elif isinstance(statement, ast.Assign):
            for target in statement.targets:
                if isinstance(target, ast.Name):
                    values[target.id] = _literal(statement.value)
    revision, down = values.get("revision"), values.get("down_revision")
    if not isinstance(revision, str):
        return None
    if down is None:
        return revision, ()
    if isinstance(down, str):
        return revision, (down,)
    if isinstance(down, tuple | list) and all(isinstance(d, str) for d in down):
        return revision, tuple(down)
    return None


def script_heads(versions: Path) -> frozenset[str] | None:
    """The head revisions of the scripts in ``versions``; ``None`` when one cannot be read."""
    revisions: set[str] = set()
    parents: set[str] = set()
    scripts = sorted(versions.glob("*.py"))
    if not scripts:
        return None
    for script in scripts:
        declared = _declared(script)
        if declared is None:
            return None
        revision, down = declared
        revisions.add(revision)
        parents.update(down)
    return frozenset(revisions - parents)


def versions_dir(package: str) -> Path | None:
    """``<package>/migrations/versions`` (where ``panjereh.common.migrations`` looks)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "migrations" / "versions"
    return folder if folder.is_dir() else None


async def database_revisions(dsn: str) -> frozenset[str] | None:
    """The revisions recorded in the database's one version table; ``None`` when there is no
    such table, more than one, or the database cannot be read."""
    try:
        connection = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        schemas = await connection.fetch(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = $1",
            VERSION_TABLE,
        )
        if len(schemas) != 1:
            return None
        schema = str(schemas[0]["table_schema"]).replace('"', '""')
        rows = await connection.fetch(f'SELECT version_num FROM "{schema}".{VERSION_TABLE}')  # noqa: S608 - a schema name read from the catalog, quoted
        return frozenset(str(row["version_num"]) for row in rows)
    except asyncpg.PostgresError:
        return None
    finally:
        await connection.close()


async def at_head(package: str, dsn: str) -> bool:
    """True only when ``package``'s database records exactly its scripts' heads."""
    folder = versions_dir(package)
    heads = script_heads(folder) if folder is not None else None
    if not heads:
        return False
    return await database_revisions(dsn) == heads
