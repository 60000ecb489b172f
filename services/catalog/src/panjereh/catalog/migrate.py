"""``python -m panjereh.catalog.migrate [revision]``: migrate the catalog database."""

from __future__ import annotations

from panjereh.catalog.config import Settings
from panjereh.common.migrations import main

if __name__ == "__main__":
    main("panjereh.catalog", Settings().database_url)
