"""One run's work: every selected asset's sync, concurrently, on ONE `BitrixClient`.

An asset is one of three kinds of job: an entity (`EntitySync`), the deal-contact links
(`DealContactSync`) or all smart processes (`SmartProcessesSync`). Sharing the client means
one limiter and shared batches, so per-entity request counts overlap; the client's own
statistics (`RunOutcome.totals`) count every HTTP request of the run exactly once. Jobs are
keyed by whatever the caller names them by (the Dagster layer: asset keys).
"""

import asyncio
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from bitrix_core.client import BitrixClient
from bitrix_core.entities import EntitySpec
from bitrix_core.stats import CallStats
from dagster_bitrix24.sync.entity import EntitySync
from dagster_bitrix24.sync.links import DEAL_CONTACT, DealContactSync
from dagster_bitrix24.sync.options import SyncOptions, SyncResult
from dagster_bitrix24.sync.protocol import ClientSource, WarehouseWriter
from dagster_bitrix24.sync.smart_processes import SMART_PROCESSES, SmartProcessesSync

Key = TypeVar("Key", bound=Hashable)


@dataclass(frozen=True)
class AssetJob:
    """What one selected asset syncs; `exclude` names types a smart-process asset skips."""

    spec: EntitySpec
    options: SyncOptions
    exclude: tuple[str, ...] = ()


@dataclass
class JobOutcome:
    """An asset's results (one per table); link tables carry their own count and columns."""

    results: list[SyncResult]
    aggregate: bool = False
    row_count: int | None = None
    columns: list[tuple[str, str, str]] | None = None


@dataclass
class RunOutcome(Generic[Key]):
    """Every job's outcome (or its exception) and the run's request totals."""

    outcomes: dict[Key, JobOutcome | BaseException] = field(default_factory=dict)
    totals: CallStats = field(default_factory=CallStats)


def run_jobs(
    bitrix24: ClientSource, writer: WarehouseWriter, jobs: dict[Key, AssetJob]
) -> RunOutcome[Key]:
    """Run the jobs on one client in a private event loop; return when all have finished."""
    return asyncio.run(_run_all(bitrix24, writer, jobs))


async def _run_all(
    bitrix24: ClientSource, writer: WarehouseWriter, jobs: dict[Key, AssetJob]
) -> RunOutcome[Key]:
    lock = asyncio.Lock()
    run: RunOutcome[Key] = RunOutcome()
    async with bitrix24.get_client() as client:
        answers = await asyncio.gather(
            *(_run_job(client, writer, job, lock) for job in jobs.values()),
            return_exceptions=True,
        )
        run.totals.merge(client.stats)
    for key, answer in zip(jobs, answers, strict=True):
        if isinstance(answer, BaseException) and not isinstance(answer, Exception):
            raise answer  # KeyboardInterrupt, cancellation: not an entity's failure
        run.outcomes[key] = answer
    return run


async def _run_job(
    client: BitrixClient, writer: WarehouseWriter, job: AssetJob, lock: asyncio.Lock
) -> JobOutcome:
    if job.spec.name == SMART_PROCESSES:
        results = await SmartProcessesSync(
            client=client, warehouse=writer, options=job.options, exclude=job.exclude,
            write_lock=lock,
        ).run()  # fmt: skip
        return JobOutcome(results, aggregate=True)
    if job.spec.name == DEAL_CONTACT:
        links = DealContactSync(client=client, warehouse=writer, options=job.options,
                                write_lock=lock)  # fmt: skip
        result = await links.run()
        row_count = await asyncio.to_thread(links.table.row_count)
        return JobOutcome([result], row_count=row_count, columns=links.table.column_schema())
    sync = EntitySync(client=client, warehouse=writer, spec=job.spec, options=job.options,
                      write_lock=lock)  # fmt: skip
    return JobOutcome([await sync.run()])
