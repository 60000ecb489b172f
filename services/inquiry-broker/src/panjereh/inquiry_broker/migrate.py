"""``python -m panjereh.inquiry_broker.migrate [revision]``: migrate the inquiry broker database."""

from __future__ import annotations

from panjereh.common.migrations import main
from panjereh.inquiry_broker.config import Settings

if __name__ == "__main__":
    main("panjereh.inquiry_broker", Settings().database_url)
