"""OpenAPI 3.1 document of the generated API, built from one snapshot — so it is always current.

Fed by a ``Snapshot`` and what the principal asking may do; feeds ``GET {prefix}/openapi.json``, the docs page
and ``dxapi openapi`` (everything). ``document`` assembles it and describes the paths of every entity,
``schemas`` the values and bodies of entities, ``token`` ``POST /token`` and the security schemes,
``envelopes`` the references, ``{"data": …}`` wrappers and error answers they all share.
"""

from __future__ import annotations

from dxapi.openapi.document import build_openapi

__all__ = ["build_openapi"]
