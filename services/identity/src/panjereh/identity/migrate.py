"""``python -m panjereh.identity.migrate [revision]``: migrate the identity database."""

from __future__ import annotations

from panjereh.common.migrations import main
from panjereh.identity.config import Settings

if __name__ == "__main__":
    main("panjereh.identity", Settings().database_url)
