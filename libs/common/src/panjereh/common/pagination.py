"""Lists as the contract shapes them: ``?page=&page_size=`` → ``{items, total, page, ...}``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel

T = TypeVar("T")

#: The contract's ceiling on ``page_size``.
MAX_PAGE_SIZE = 100
#: Past this page a client is scraping, not reading: refuse rather than scan.
MAX_PAGE = 10_000


class Page(BaseModel, Generic[T]):
    """One page of a list."""

    items: list[T]
    total: int
    page: int
    page_size: int


@dataclass(frozen=True)
class Paging:
    """Which page a client asked for."""

    page: int = 1
    page_size: int = 20

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size

    @property
    def limit(self) -> int:
        return self.page_size

    def of(self, items: list[T], total: int) -> Page[T]:
        """``items`` (this page's) and ``total`` (all of them) as a :class:`Page`."""
        return Page[T](items=items, total=total, page=self.page, page_size=self.page_size)


async def _paging(
    page: Annotated[int, Query(ge=1, le=MAX_PAGE, description="page number, from 1")] = 1,
    page_size: Annotated[
        int, Query(ge=1, le=MAX_PAGE_SIZE, description="items per page (at most 100)")
    ] = 20,
) -> Paging:
    return Paging(page=page, page_size=page_size)


#: ``paging: PageParams`` in an endpoint: validated ``page`` and ``page_size`` query parameters.
PageParams = Annotated[Paging, Depends(_paging)]
