"""``python -m panjereh.requests.migrate [revision]``: migrate the requests database."""

from __future__ import annotations

from panjereh.common.migrations import main
from panjereh.requests.config import Settings

if __name__ == "__main__":
    main("panjereh.requests", Settings().database_url)
