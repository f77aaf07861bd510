"""Encryption of Meta tokens at rest: MultiFernet over META_TOKEN_KEYS (newest key first).

Adding a new key in front keeps old ciphertexts readable; ``rotate_token_keys`` re-encrypts them
with the newest key so the old one can then be dropped.
"""
from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class TokenDecryptionError(Exception):
    """The ciphertext matches none of the configured keys (a key was dropped too early)."""


@lru_cache(maxsize=4)
def _multifernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("META_TOKEN_KEYS is empty: tokens cannot be encrypted.")
    try:
        return MultiFernet([Fernet(key.encode() if isinstance(key, str) else key) for key in keys])
    except ValueError:  # Fernet's "must be 32 url-safe base64-encoded bytes"; the key itself is never echoed
        raise ImproperlyConfigured("META_TOKEN_KEYS holds a key that is not a Fernet key "
                                   "(32 url-safe base64-encoded bytes).") from None


def check_token_keys() -> None:
    """Raise ImproperlyConfigured when META_TOKEN_KEYS is empty or holds a malformed key."""
    _multifernet(_keys())


def _keys() -> tuple[str, ...]:
    return tuple(k.strip() for k in settings.META_TOKEN_KEYS if k and k.strip())


def encrypt_token(token: str) -> str:
    return _multifernet(_keys()).encrypt(token.encode()).decode()


def decrypt_token(ciphertext: str) -> str:
    try:
        return _multifernet(_keys()).decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise TokenDecryptionError("The stored token cannot be decrypted with META_TOKEN_KEYS.") from exc


def rotate_ciphertext(ciphertext: str) -> str:
    """The same secret, encrypted with the newest key."""
    try:
        return _multifernet(_keys()).rotate(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise TokenDecryptionError("The stored token cannot be decrypted with META_TOKEN_KEYS.") from exc
