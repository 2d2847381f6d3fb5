"""One failure, one message: entity errors sharing a cause are reported once, with what to do.

A wrong webhook code fails every entity of a run with the same 401; the run reports it once
("3 assets (bitrix24/crm_deal, ...): InvalidTokenError ... What to do: check
BITRIX24_WEBHOOK_URL ..."), not once per entity, and not once per step: a run with several
Bitrix24 steps (a partitioned CRM step and a directory step) shows the cause in full in the
step that failed of it first; the others fail too, with a short reference to that step.
"""

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import sqlalchemy.exc
from dagster import AssetExecutionContext, DagsterEventType, Failure, MetadataValue
from dagster._core.events import EngineEventData

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


def _who(names: list[str]) -> str:
    """The failed assets: a name, or their count and names."""
    return names[0] if len(names) == 1 else f"{len(names)} assets ({', '.join(names)})"


def group_message(group: FailureGroup) -> str:
    """One line: who, what, what to do."""
    line = f"{_who(group.assets)}: {group.error}"
    return f"{line}. What to do: {group.advice}" if group.advice else line


def failure_messages(failed: Mapping[str, BaseException]) -> list[str]:
    """One line per distinct cause among `failed` (asset name -> error): who, what, what to do."""
    return [group_message(group) for group in failure_groups(failed)]


#: Engine-event metadata key of a step's claim on its causes (`claim_causes`).
CLAIM_KEY = "bitrix24/failing_causes"


def claim_causes(context: AssetExecutionContext, causes: list[str]) -> dict[str, str]:
    """Record in the run's event log that this step fails of `causes`; return, per cause,
    the step that claimed it first in this run (this step, or one to refer to).

    The event log is append-only and ordered, so of steps failing at the same moment in
    parallel processes exactly one finds its own claim first and reports the cause in full.
    """
    step = context.get_step_execution_context().step.key
    instance, run_id = context.instance, context.run_id
    instance.report_engine_event(
        f"{step}: {len(causes)} cause(s) of failure recorded, so the run reports each in full "
        "once (in the first step failing of it)",
        context.dagster_run,
        EngineEventData(metadata={CLAIM_KEY: MetadataValue.json(causes)}),
        step_key=step,
    )
    first: dict[str, str] = {}
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT)
    for record in records.records:  # oldest first
        event = record.event_log_entry.dagster_event
        data = event.engine_event_data if event else None
        claimed = data.metadata.get(CLAIM_KEY) if data else None
        if event is not None and isinstance(claimed, MetadataValue) and event.step_key:
            for cause in claimed.value:
                first.setdefault(cause, event.step_key)
    return {cause: first.get(cause, step) for cause in causes}


def sync_failure(context: AssetExecutionContext, failed: Mapping[str, BaseException]) -> Failure:
    """The step's `Failure`: one line per cause, in full unless an earlier step of the run
    failed of it (then a reference to that step). Its metadata lists every cause in full."""
    groups = failure_groups(failed)
    step = context.get_step_execution_context().step.key
    owners = claim_causes(context, [group.cause for group in groups])
    lines = []
    for group in groups:
        owner = owners[group.cause]
        if owner == step:
            lines.append(group_message(group))
        else:
            kind = group.error.split(":", 1)[0]
            lines.append(f"{_who(group.assets)}: the same failure as step {owner} ({kind}); "
                         "its error says what to do")  # fmt: skip
    return Failure(
        description="Bitrix24 sync failed: " + " | ".join(lines),
        metadata={CAUSES_KEY: MetadataValue.json([asdict(group) for group in groups])},
    )
