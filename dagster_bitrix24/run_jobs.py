"""One run's work: every selected asset's sync, concurrently, on ONE `BitrixClient`.

An asset is one of three kinds of job: an entity (`EntitySync`), the deal-contact links
(`DealContactSync`) or all smart processes (`SmartProcessesSync`). Sharing the client means
one limiter and shared batches, so per-entity request counts overlap; the client's own
statistics (`RunOutcome.totals`) count every HTTP request of the run exactly once.
"""

import asyncio
from dataclasses import dataclass, field
from typing import Any

from dagster import AssetKey

from bitrix_core.entities import EntitySpec
from bitrix_core.stats import CallStats
from dagster_bitrix24.links import DEAL_CONTACT, DealContactSync
from dagster_bitrix24.smart_processes import SMART_PROCESSES, SmartProcessesSync
from dagster_bitrix24.sync import EntitySync, SyncOptions, SyncResult


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
class RunOutcome:
    """Every asset's outcome (or its exception) and the run's request totals."""

    outcomes: dict[AssetKey, JobOutcome | BaseException] = field(default_factory=dict)
    totals: CallStats = field(default_factory=CallStats)


def run_jobs(bitrix24: Any, writer: Any, jobs: dict[AssetKey, AssetJob]) -> RunOutcome:
    """Run the jobs on one client in a private event loop; return when all have finished."""
    return asyncio.run(_run_all(bitrix24, writer, jobs))


async def _run_all(bitrix24: Any, writer: Any, jobs: dict[AssetKey, AssetJob]) -> RunOutcome:
    lock = asyncio.Lock()
    run = RunOutcome()
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


async def _run_job(client: Any, writer: Any, job: AssetJob, lock: asyncio.Lock) -> JobOutcome:
    common = {"client": client, "warehouse": writer, "options": job.options, "write_lock": lock}
    if job.spec.name == SMART_PROCESSES:
        results = await SmartProcessesSync(exclude=job.exclude, **common).run()
        return JobOutcome(results, aggregate=True)
    if job.spec.name == DEAL_CONTACT:
        links = DealContactSync(**common)
        result = await links.run()
        row_count = await asyncio.to_thread(links.row_count)
        return JobOutcome([result], row_count=row_count, columns=links.column_schema())
    return JobOutcome([await EntitySync(spec=job.spec, **common).run()])
