"""Secret hashing: argon2id for passwords, client secrets and API keys; SHA-256 for refresh tokens.

Only hashes are stored. Verification runs in constant time (argon2's own comparison) and a verification for
an unknown name still hashes once, so "no such user" and "wrong password" take the same time.

argon2 costs tens of milliseconds of CPU on purpose, so a server never runs it on its event loop: the async
helpers run it on a small dedicated thread pool (argon2's C code releases the GIL). The pool is bounded, so a
flood of guesses queues up behind it instead of taking every core; callers throttle guesses before they get here.

argon2 is loaded, and the hash for unknown names computed, when the first secret is hashed or checked: a worker
that only verifies access tokens never pays for either.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from dxapi.heap import glibc

if TYPE_CHECKING:
    from argon2 import PasswordHasher

# OWASP's minimum for argon2id: 19 MiB memory, 2 iterations, 1 lane.
ARGON2_MEMORY_KIB = 19 * 1024
# Blocks from this size on are mapped for themselves and unmapped when freed (glibc's M_MMAP_THRESHOLD).
LARGE_BLOCK_BYTES = 1024 * 1024


def _return_large_blocks_to_the_system() -> None:
    """Fix glibc's mmap threshold, so that argon2's 19 MiB leave the process once a hash is done.

    glibc raises the threshold to the size of the largest mapped block freed so far: after the first hash,
    every later one came from a thread's heap arena, and a worker kept about 20 MB it no longer used (RSS 113
    instead of 93 MB after one ``/token``). A fixed threshold also switches that adjustment off for everything
    else; 1 MiB keeps request bodies and rendered pages in the heap, as before.
    """
    libc = glibc()  # musl has no mallopt and returns large blocks anyway
    if libc is not None:
        libc.mallopt(-3, LARGE_BLOCK_BYTES)  # M_MMAP_THRESHOLD


_return_large_blocks_to_the_system()
# Half the cores at most: the other half keeps serving requests whatever arrives at /token or with API keys.
_POOL = ThreadPoolExecutor(max_workers=max(1, min(4, (os.cpu_count() or 2) // 2)), thread_name_prefix="dxapi-hash")


@functools.cache
def _hasher() -> tuple[PasswordHasher, str]:
    """The hasher and the hash an unknown name is checked against, made at the first use of either (so that
    the first check costs the same one extra hash whether the name exists or not)."""
    from argon2 import PasswordHasher

    hasher = PasswordHasher(time_cost=2, memory_cost=ARGON2_MEMORY_KIB, parallelism=1)
    return hasher, hasher.hash(secrets.token_urlsafe(16))


def hash_secret(secret: str) -> str:
    return _hasher()[0].hash(secret)


def verify_secret(stored_hash: str | None, secret: str) -> bool:
    """True when ``secret`` matches; an absent hash still costs one verification (no timing oracle)."""
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

    hasher, dummy = _hasher()
    try:
        return hasher.verify(stored_hash or dummy, secret) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def hash_secret_async(secret: str) -> str:
    """:func:`hash_secret` on the hashing pool, off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(_POOL, hash_secret, secret)


async def verify_secret_async(stored_hash: str | None, secret: str) -> bool:
    """:func:`verify_secret` on the hashing pool, off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(_POOL, verify_secret, stored_hash, secret)


def digest(token: str) -> str:
    """SHA-256 of a high-entropy random token (refresh tokens, cache keys for API keys)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_secret(prefix: str, size: int = 32) -> str:
    """A random credential such as ``dxk_…``; the prefix tells humans and secret scanners what it is."""
    return f"{prefix}_{secrets.token_urlsafe(size)}"
