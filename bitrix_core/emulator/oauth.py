"""The OAuth 2.0 token server: authorization codes, access tokens, rotating refresh tokens."""

import secrets
import time
from dataclasses import dataclass
from typing import Any

CODE_LIFETIME_S = 30.0
ACCESS_LIFETIME_S = 3600.0
REFRESH_LIFETIME_S = 180 * 24 * 3600.0


class OAuthError(Exception):
    """A refused grant: `code` is the OAuth error code, `status` the HTTP status."""

    def __init__(self, code: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.status = status


@dataclass
class _Grant:
    client_id: str
    expires_at: float


def _number(seconds: float) -> float | int:
    return int(seconds) if float(seconds).is_integer() else round(seconds, 3)


class OAuthServer:
    """Issues and checks tokens for one application; all lifetimes scaled by `time_scale`."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        time_scale: float,
        member_id: str,
        scope: str = "crm,user,task,department",
    ) -> None:
        self.client_id = client_id
        self._client_secret = client_secret
        self.time_scale = time_scale
        self.member_id = member_id
        self.scope = scope
        self.base_url = ""  # set once the server listens
        self._codes: dict[str, _Grant] = {}
        self._access: dict[str, _Grant] = {}
        self._refresh: dict[str, _Grant] = {}

    def __repr__(self) -> str:
        return f"OAuthServer(client_id={self.client_id!r}, client_secret=<redacted>)"

    def issue_auth_code(self) -> str:
        """An authorization code, as the portal hands the app after the user consents."""
        code = secrets.token_hex(16)
        self._codes[code] = _Grant(self.client_id, time.time() + CODE_LIFETIME_S * self.time_scale)
        return code

    def grant(self, params: dict[str, Any]) -> dict[str, Any]:
        """Answer `/oauth/token/` for authorization_code and refresh_token grants."""
        grant_type = str(params.get("grant_type", ""))
        client_id = str(params.get("client_id", ""))
        client_secret = str(params.get("client_secret", ""))
        if grant_type not in ("authorization_code", "refresh_token"):
            raise OAuthError("invalid_request", "grant_type must be authorization_code or refresh_token")
        if client_id != self.client_id or not secrets.compare_digest(
            client_secret, self._client_secret
        ):
            raise OAuthError("invalid_client", "Invalid client credentials", status=401)
        now = time.time()
        if grant_type == "authorization_code":
            held = self._codes.pop(str(params.get("code", "")), None)
        else:
            held = self._refresh.pop(str(params.get("refresh_token", "")), None)
        if held is None or held.expires_at <= now or held.client_id != client_id:
            raise OAuthError("invalid_grant", "Invalid grant")
        return self._tokens(now)

    def _tokens(self, now: float) -> dict[str, Any]:
        access, refresh = secrets.token_hex(24), secrets.token_hex(24)
        expires_in = ACCESS_LIFETIME_S * self.time_scale
        self._access[access] = _Grant(self.client_id, now + expires_in)
        self._refresh[refresh] = _Grant(self.client_id, now + REFRESH_LIFETIME_S * self.time_scale)
        return {
            "access_token": access,
            "expires": _number(round(now + expires_in, 3)),
            "expires_in": _number(expires_in),
            "scope": self.scope,
            "domain": self.base_url.split("://", 1)[-1],
            "server_endpoint": f"{self.base_url}/rest/",
            "status": "L",
            "client_endpoint": f"{self.base_url}/rest/",
            "member_id": self.member_id,
            "user_id": 1,
            "refresh_token": refresh,
        }

    def check_access(self, token: str) -> str | None:
        """None when the token is good, else the error code: `expired_token`/`invalid_token`."""
        held = self._access.get(token)
        if held is None:
            return "invalid_token"
        if held.expires_at <= time.time():
            return "expired_token"
        return None

    def expire_access_tokens(self) -> None:
        """Make every issued access token expired now (for tests)."""
        for held in self._access.values():
            held.expires_at = 0.0

    def clear(self) -> None:
        """Forget all codes and tokens."""
        self._codes.clear()
        self._access.clear()
        self._refresh.clear()
