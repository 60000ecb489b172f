"""Reading the catalog's public API: how an empty card replica is filled at start-up.

Events keep the replica current; this is only for a fresh deployment (or a replica restored
from nothing) so that requests can be taken before the catalog publishes anything new.
Called with no transaction open (the kernel's outbound client enforces it).
"""

from __future__ import annotations

import logging

import httpx

from panjereh.contracts.catalog import PublishedCard

logger = logging.getLogger(__name__)
PAGE_SIZE = 100


async def published_cards(client: httpx.AsyncClient, catalog_url: str) -> list[PublishedCard]:
    """Every published card the catalog lists, read one by one (the full card)."""
    base = catalog_url.rstrip("/")
    codes: list[str] = []
    page = 1
    while True:
        response = await client.get(
            f"{base}/api/v1/catalog/services", params={"page": page, "page_size": PAGE_SIZE}
        )
        response.raise_for_status()
        body = response.json()
        codes += [str(item["code"]) for item in body["items"]]
        if page * PAGE_SIZE >= int(body["total"]) or not body["items"]:
            break
        page += 1
    cards = []
    for code in codes:
        response = await client.get(f"{base}/api/v1/catalog/services/{code}")
        if response.status_code == httpx.codes.NOT_FOUND:
            continue  # retired between the two reads
        response.raise_for_status()
        cards.append(PublishedCard.model_validate(response.json()))
    return cards
