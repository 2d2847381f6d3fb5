"""Scrub secrets (webhook codes, tokens, client secrets) from any text before it leaves.

Auth objects register the secrets they hold; ``redact`` replaces every registered secret
and every secret-shaped fragment (``/rest/1/<code>/``, ``auth=...``, ``"refresh_token": ...``)
with ``***``::

    >>> redact("https://x.bitrix24.com/rest/1/abc123def/crm.deal.list")
    'https://x.bitrix24.com/rest/1/***/crm.deal.list'
"""

import hashlib
import logging
import re
import threading
from urllib.parse import quote, quote_plus

__all__ = [
    "MASK",
    "REDACTOR",
    "RedactingFilter",
    "Redactor",
    "fingerprint",
    "redact",
    "register_secret",
]

MASK = "***"
_MIN_SECRET_LENGTH = 4
_SECRET_NAMES = r"auth|access_token|refresh_token|client_secret|code|token|password"
_PATTERNS = (
    # webhook path: /rest/<user id>/<code>/ (any first segment: a mistyped user id too)
    (re.compile(r"(/rest/[^/?#\s\"']+/)[^/?#\s\"']+"), r"\1" + MASK),
    # query / form fields: auth=..., refresh_token=...
    (re.compile(rf"(?i)\b((?:{_SECRET_NAMES})=)[^&\s\"'#]+"), r"\1" + MASK),
    # JSON fields: "access_token": "..."
    (re.compile(rf'(?i)("(?:{_SECRET_NAMES})"\s*:\s*")[^"]*'), r"\1" + MASK),
)


class Redactor:
    """A registry of secrets, scrubbed (with their URL-encoded forms) from any string."""

    def __init__(self, *, max_secrets: int = 1000) -> None:
        self._secrets: dict[str, None] = {}
        self._max = max_secrets
        self._lock = threading.Lock()

    def register(self, secret: str | None) -> None:
        """Remember a secret; too-short values are ignored (they would mask ordinary text)."""
        if not secret or len(secret) < _MIN_SECRET_LENGTH:
            return
        with self._lock:
            for form in {secret, quote(secret, safe=""), quote_plus(secret, safe="")}:
                self._secrets.pop(form, None)
                self._secrets[form] = None
            while len(self._secrets) > self._max:
                self._secrets.pop(next(iter(self._secrets)))

    def redact(self, text: str) -> str:
        """``text`` with every registered secret and secret-shaped fragment masked."""
        if not text:
            return text
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text


REDACTOR = Redactor()


def redact(text: str) -> str:
    """Scrub secrets from ``text`` using the process-wide registry."""
    return REDACTOR.redact(text)


def register_secret(secret: str | None) -> None:
    """Add a secret to the process-wide registry."""
    REDACTOR.register(secret)


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs secrets from every record's final message."""

    def __init__(self, redactor: Redactor = REDACTOR) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self._redactor.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def fingerprint(secret: str) -> str:
    """A short, non-reversible tag for a secret: compare credentials without holding them."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:16]
