"""Back-office request bodies: read only once the caller has checked who is asking, and never beyond a cap.

A declared ``Content-Length`` over the cap is refused before a byte is read; a body without one (chunked) is
counted while it streams and dropped as soon as it passes the cap. What was read is then parsed as a form
(URL-encoded, or multipart where a file upload is expected).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from starlette.datastructures import FormData
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

MAX_FORM_BYTES = 1024 * 1024
# The edit grid posts 16 fields per column; a field costs at least 2 bytes ("a="), so the byte cap bounds this.
MAX_FIELDS = MAX_FORM_BYTES // 2


class TooLarge(Exception):
    """The body is larger than the cap; the rest of it is never read."""


class Unreadable(Exception):
    """The body is not a form (broken multipart, too many parts, the client went away)."""


def declared_too_large(request: Request, cap: int) -> bool:
    declared = request.headers.get("content-length")
    return declared is not None and (not declared.isdigit() or int(declared) > cap)


async def read_form(request: Request, cap: int, *, files: int = 0) -> FormData:
    """The form in the body of ``request``, at most ``cap`` bytes of it and at most ``files`` uploaded files."""
    if declared_too_large(request, cap):
        raise TooLarge
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > cap:
                raise TooLarge
    except ClientDisconnect:
        raise Unreadable from None
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    try:
        if kind == "multipart/form-data":
            return await MultiPartParser(
                request.headers, _once(bytes(body)), max_files=files, max_fields=MAX_FIELDS, max_part_size=cap
            ).parse()
        if kind == "application/x-www-form-urlencoded":
            return await FormParser(
                request.headers, _once(bytes(body)), max_fields=MAX_FIELDS, max_part_size=cap
            ).parse()
        return FormData()  # as Starlette does for other types: no fields, so no CSRF token either
    except MultiPartException:
        raise Unreadable from None


async def _once(body: bytes) -> AsyncGenerator[bytes, None]:
    yield body
    yield b""
