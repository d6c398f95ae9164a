"""OpenAPI 3.1 document of the generated API, built from one snapshot — so it is always current.

Fed by a ``Snapshot`` and what the principal asking may do; feeds ``GET {prefix}/openapi.json``, the docs page
and ``dxapi openapi`` (everything). ``document`` assembles it and describes the paths of every entity,
``schemas`` the values and bodies of entities, ``token`` ``POST /token`` and the security schemes,
``envelopes`` the references, ``{"data": …}`` wrappers and error answers they all share.

The builder is imported at the first document asked for: a worker serving only the API does without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dxapi.openapi.envelopes import Allows
    from dxapi.registry.snapshot import Snapshot
    from dxapi.settings import Settings

__all__ = ["build_openapi"]


def build_openapi(snapshot: Snapshot, settings: Settings, allows: Allows | None = None) -> dict[str, Any]:
    """The document of ``snapshot`` for a principal (``allows``: its ``Principal.allows``; None: everything)."""
    from dxapi.openapi.document import build_openapi as build

    return build(snapshot, settings, allows)
