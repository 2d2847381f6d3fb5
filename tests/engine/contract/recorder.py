"""vcrpy set-up for the recorded contract tests: scrub secrets and the portal host BEFORE
anything is written, and replay with the same scrubbing applied to live requests.

Every recorded URL is rewritten to the placeholder portal ``PORTAL_BASE``; webhook codes,
tokens, client secrets and refresh tokens become ``***``; only the Content-Type header is
kept. Replays call ``PLACEHOLDER_WEBHOOK``, which the same scrubbing maps onto the record.
"""

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import vcr

from bitrix_core.redaction import MASK, Redactor

CASSETTES = Path(__file__).parent / "cassettes"
PORTAL_HOST = "portal.bitrix24.example"
PORTAL_BASE = f"https://{PORTAL_HOST}"
PLACEHOLDER_WEBHOOK = f"{PORTAL_BASE}/rest/1/REDACTED/"
_KEPT_HEADERS = {"content-type"}


class Scrubber:
    """Rewrites requests and responses so no secret and no real host reaches a cassette."""

    def __init__(self, *, origins: Iterable[str], secrets: Iterable[str]) -> None:
        self._origins = sorted({_origin(url) for url in origins if url}, key=len, reverse=True)
        self._hosts = sorted({urlsplit(o).netloc for o in self._origins}, key=len, reverse=True)
        self._redactor = Redactor()
        for secret in secrets:
            self._redactor.register(secret)

    def text(self, text: str) -> str:
        """Host replaced by the placeholder; webhook code, tokens and secrets masked."""
        for origin in self._origins:
            text = text.replace(origin, PORTAL_BASE)
            text = text.replace(origin.replace("/", "\\/"), PORTAL_BASE.replace("/", "\\/"))
        for host in self._hosts:
            text = text.replace(host, PORTAL_HOST)
        return self._redactor.redact(text)

    def request(self, request: Any) -> Any:
        request.uri = self.text(request.uri)
        if request.body:
            body = request.body
            raw = body.decode("utf-8") if isinstance(body, bytes) else body
            request.body = self.text(raw).encode("utf-8")
        for name in list(request.headers):
            if name.lower() not in _KEPT_HEADERS:
                del request.headers[name]
        return request

    def response(self, response: dict[str, Any]) -> dict[str, Any]:
        body = response.get("body", {}).get("string", b"")
        raw = body.decode("utf-8") if isinstance(body, bytes) else body
        response["body"]["string"] = _scrub_json_tokens(self.text(raw)).encode("utf-8")
        response["headers"] = {
            name: values
            for name, values in response.get("headers", {}).items()
            if name.lower() in _KEPT_HEADERS
        }
        return response


def _scrub_json_tokens(text: str) -> str:
    """Token answers: every token-like field masked, whatever the formatting."""
    try:
        body = json.loads(text)
    except ValueError:
        return text
    if not isinstance(body, dict) or not ({"access_token", "refresh_token"} & set(body)):
        return text
    for name in ("access_token", "refresh_token", "member_id"):
        if name in body:
            body[name] = MASK
    return json.dumps(body)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def contract_vcr(
    *,
    record: bool,
    origins: Iterable[str] = (),
    secrets: Iterable[str] = (),
    directory: Path = CASSETTES,
) -> vcr.VCR:
    """A VCR that records (scrubbing first) or only replays (``record_mode="none"``)."""
    scrubber = Scrubber(origins=origins, secrets=secrets)
    return vcr.VCR(
        cassette_library_dir=str(directory),
        record_mode="all" if record else "none",
        match_on=["method", "scheme", "host", "port", "path", "query", "body"],
        before_record_request=scrubber.request,
        before_record_response=scrubber.response,
        decode_compressed_response=True,
    )
