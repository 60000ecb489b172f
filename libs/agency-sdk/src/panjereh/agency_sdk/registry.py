"""Fetch the input schemas of an agency's inquiry types from the broker's registry."""

from __future__ import annotations

from typing import Any

import httpx


async def fetch_input_schemas(
    registry_url: str,
    *,
    agency: str,
    access_token: str,
    http_timeout: float = 10.0,
    client: httpx.AsyncClient | None = None,
) -> dict[str, dict[str, Any]]:
    """``{type: input schema}`` for the types ``agency`` provides, from
    ``GET <registry_url>/api/v1/inquiry-types`` with an access token of the agency's client.

    ``client`` reuses an existing HTTP client (its own base URL then wins).
    """
    headers = {"Authorization": f"Bearer {access_token}"}
    if client is not None:
        response = await client.get("/api/v1/inquiry-types", headers=headers)
    else:
        async with httpx.AsyncClient(base_url=registry_url, timeout=http_timeout) as own:
            response = await own.get("/api/v1/inquiry-types", headers=headers)
    response.raise_for_status()
    return {
        item["type"]: item["input_schema"]
        for item in response.json()["items"]
        if item["provider_agency"] == agency
    }
