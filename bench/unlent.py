"""The service's ASGI app with propagation switched off (bench.load --propagation off): no row borrows."""

from __future__ import annotations

from app.catalog import Catalog
from app.main import app
from app.propagation import Lending


def _nothing_lent(catalog: Catalog) -> Lending:
    """No row borrows (neither computed at open nor read from the generation)."""
    return Lending({})


setattr(Catalog, "borrowed", _nothing_lent)  # noqa: B010 (a bench switch, not the product's)

__all__ = ["app"]
