"""Authentication primitives: password hashing, access and refresh tokens, TOTP and recovery codes.

Pure functions over values passed in: no I/O, no environment reads. Storage, throttling and the
HTTP answers live in the services and the API layer. This package's ``__init__`` imports nothing
so that importing one primitive does not load the others' libraries.
"""

from __future__ import annotations


class AuthError(Exception):
    """Base class of every rule the authentication primitives refuse to break."""
