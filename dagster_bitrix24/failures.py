"""One failure, one message: entity errors sharing a cause are reported once, with what to do.

A wrong webhook code fails every entity of a run with the same 401; the run reports it once
("3 assets (bitrix24/crm_deal, ...): InvalidTokenError ... What to do: check
BITRIX24_WEBHOOK_URL ..."), not once per entity.
"""

from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy.exc

from bitrix_core.errors import (
    BitrixError,
    BitrixMethodNotFoundError,
    BitrixPermissionError,
    BitrixTransportError,
    InvalidCredentialsError,
    InvalidTokenError,
    OAuthGrantError,
    OverloadLimitError,
)

#: What to do about an error, by its class (the first match counts).
_HINTS: tuple[tuple[type[BaseException], str], ...] = (
    (InvalidTokenError, "check BITRIX24_WEBHOOK_URL: its code (or the OAuth token) is wrong"),
    (
        InvalidCredentialsError,
        "the webhook was deleted, changed or blocked: create a new one and set "
        "BITRIX24_WEBHOOK_URL to it",
    ),
    (OAuthGrantError, "the refresh token is dead: authorize the application again"),
    (
        BitrixPermissionError,
        "add the scope (crm, user, department, task) to the webhook or application",
    ),
    (
        BitrixMethodNotFoundError,
        "check BITRIX24_WEBHOOK_URL: it must end in /rest/<user id>/<code>/",
    ),
    (
        BitrixTransportError,
        "the portal did not answer: check the host in BITRIX24_WEBHOOK_URL and the network",
    ),
    (OverloadLimitError, "Bitrix24 blocked the portal's REST API: contact Bitrix24 support"),
    (
        sqlalchemy.exc.OperationalError,
        "the warehouse cannot be reached: check WAREHOUSE_URL and that the database is up",
    ),
)


def hint(error: BaseException) -> str | None:
    """What to do about `error`, when known."""
    return next((text for kind, text in _HINTS if isinstance(error, kind)), None)


#: Failure metadata key listing the causes of a failed sync (`FailureGroup`s as dicts), so
#: a caller holding several steps' failures (the example's demo) can merge equal causes.
CAUSES_KEY = "bitrix24/causes"


@dataclass
class FailureGroup:
    """The assets that failed for one cause: `cause` is the key equal causes share."""

    cause: str
    assets: list[str]
    error: str
    advice: str | None


def _cause(error: BaseException) -> str:
    """Errors with the same cause share this key (a Bitrix24 error's text names its method)."""
    if isinstance(error, BitrixError):
        return f"{type(error).__name__} {error.code} {error.status}"
    return f"{type(error).__name__} {error}"


def describe(error: BaseException) -> str:
    """`error` as one line: its class, its text (a SQL error without its statement)."""
    text = str(error)
    if isinstance(error, sqlalchemy.exc.StatementError):
        text = str(error.orig)  # the statement and the SQLAlchemy link add nothing here
    return f"{type(error).__name__}: {text}"


def failure_groups(failed: Mapping[str, BaseException]) -> list[FailureGroup]:
    """`failed` (asset name -> error) grouped by cause, in the order first seen."""
    groups: dict[str, FailureGroup] = {}
    for name, error in failed.items():
        key = _cause(error)
        if key in groups:
            groups[key].assets.append(name)
        else:
            groups[key] = FailureGroup(key, [name], describe(error), hint(error))
    return list(groups.values())


def group_message(group: FailureGroup) -> str:
    """One line: who, what, what to do."""
    names = group.assets
    who = names[0] if len(names) == 1 else f"{len(names)} assets ({', '.join(names)})"
    line = f"{who}: {group.error}"
    return f"{line}. What to do: {group.advice}" if group.advice else line


def failure_messages(failed: Mapping[str, BaseException]) -> list[str]:
    """One line per distinct cause among `failed` (asset name -> error): who, what, what to do."""
    return [group_message(group) for group in failure_groups(failed)]
