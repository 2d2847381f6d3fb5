"""One entity's sync: pick the window, stream its pages into the warehouse, move the cursor.

    result = await EntitySync(client=client, warehouse=warehouse, spec=ENTITIES["crm.deal"],
                              options=SyncOptions()).run()

Modes:
- `full`: every row (first run, `full_refresh`, `reset_cursor`, or an entity with no change
  time); with `full_refresh` rows missing from the portal are marked deleted, but only rows
  last written before the read started (another run may have written newer ones since), and
  only once the portal, asked for them by id, no longer lists them (`deletes`).
- `incremental`: rows changed at or after `cursor - lookback` (late commits and clock skew).
- `window`: rows changed in a partition's `[start, end)`; never moves the cursor, never
  marks deletes.

Every read (full, incremental, window) is verified against the portal's counts before and
after it (`BitrixClient.list(verify=True)`: one request more, two when rows went missing);
a read short of them raises IncompletePaginationError before the cursor moves or a delete is
marked. An incremental read is verified too: the cursor moves past what it read, so a row
lost there would stay lost until a full refresh.

Every mode keeps the filter of the spec's `extra_params` (a user-described entity such as
"open leads only"); incremental and window runs add their bounds on the change time to it.
A row that leaves the filter later (a stored lead then closed) is not read again by an
incremental run; a full refresh marks it deleted.

The cursor (largest change time landed, but never later than the moment the run started
reading) is committed only after every chunk has landed, so a run killed half-way leaves the
old cursor and the rerun fetches the same window again; the writer's upsert makes that rerun
free of duplicates. The warehouse is any `WarehouseWriter`.
"""

import asyncio
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from bitrix_core.client import BitrixClient
from bitrix_core.entities import EntitySpec
from bitrix_core.errors import (
    BitrixMethodNotFoundError,
    BitrixParameterError,
)
from bitrix_core.pagination import find_key
from bitrix_core.stats import CallStats, ListStats
from dagster_bitrix24.sync.cursor import (
    capped_cursor,
    own_filter,
    parse_change_time,
    partitions_state_key,
    read_started,
)
from dagster_bitrix24.sync.deletes import refuse_if_still_listed
from dagster_bitrix24.sync.options import SyncOptions, SyncResult
from dagster_bitrix24.sync.protocol import WarehouseWriter
from dagster_bitrix24.warehouse import TableLayout
from dagster_bitrix24.warehouse.schema.field_types import sampled_metadata, typed_metadata

_MULTIFIELD = "crm_multifield"
T = TypeVar("T")


class EntitySync:
    """Syncs one entity from one portal into one warehouse table."""

    def __init__(
        self,
        *,
        client: BitrixClient,
        warehouse: WarehouseWriter,
        spec: EntitySpec,
        options: SyncOptions | None = None,
        write_lock: asyncio.Lock | None = None,
    ) -> None:
        self.client = client
        self.warehouse = warehouse
        self.spec = spec
        self.table_name = warehouse.table_name(spec.name)
        self.options = options or SyncOptions()
        self._write_lock = write_lock or asyncio.Lock()
        self._filter_key, self._own_filter = own_filter(spec)
        self._run_id = self.options.run_id or uuid.uuid4().hex

    async def run(self) -> SyncResult:
        """Run the sync; the result carries everything the materialisation reports."""
        fields_stats = CallStats()
        fields = await self._fields(fields_stats)
        row_fields = {self.spec.row_key(name): meta for name, meta in fields.items()}
        layout = await self._blocking(
            self.warehouse.prepare_table,
            self.spec.name,
            row_fields,
            id_field=self.spec.id_field,
            change_field=self._change_row_key(),
        )
        result = await self._plan()
        result.stats.merge(fields_stats)  # the field requests are the entity's too
        await self._blocking(self.warehouse.start_run, self.spec.name, self._run_id)
        params = self._params(fields, result)
        started = read_started()
        scan_started = datetime.now(UTC)  # the writer's clock: rows stamped later are not stale
        run = self.client.list(
            self.spec.list_method,
            params,
            spec=self.spec,
            order=None,
            stats=result.stats,
            verify=True,  # every read claims to be complete: the cursor moves past it
        )
        seen_ids: set[Any] | None = set() if self._marks_deletes(result) else None
        newest = result.cursor_before
        chunk: list[dict[str, Any]] = []
        async for page in run:
            for row in page.rows:
                newest = self._count_row(row, result, newest)
                if seen_ids is not None:
                    seen_ids.add(row.get(self.spec.id_field))
            chunk.extend(page.rows)
            size = self.options.chunk_rows
            while len(chunk) >= size:
                await self._write(layout, chunk[:size], result)
                chunk = chunk[size:]
        if chunk:
            await self._write(layout, chunk, result)
        if seen_ids is None and self.options.check_deletes and result.mode != "window":
            scan_started = datetime.now(UTC)
            seen_ids = await self._portal_ids(result.stats)
        if seen_ids is not None:
            await self._confirm_gone(layout, seen_ids, scan_started, result)
            counts = await self._blocking(
                self.warehouse.mark_deleted, layout, seen_ids, written_before=scan_started
            )
            result.deleted, result.restored = counts.marked, counts.restored
        result.layout = layout
        result.rejected, _ = await self._blocking(
            self.warehouse.rejects, self.spec.name, self._run_id
        )
        if self._change_row_key():
            await self._commit_cursor(result, newest, started=started)
        else:
            result.cursor_after = result.cursor_before
        return result

    async def _commit_cursor(
        self, result: SyncResult, newest: datetime | None, *, started: datetime
    ) -> None:
        """Store the cursor (unless a partition run or nothing seen); report it on `result`.

        A partition run whose window reaches the moment it started reading records that
        moment under `partitions_key` instead: the freshness of a partitioned table.
        """
        cursor = capped_cursor(newest, started=started, before=result.cursor_before)
        if result.mode != "window" and cursor is not None:
            await self._blocking(self.warehouse.commit_cursor, self.cursor_key, cursor.isoformat())
            result.cursor_after = cursor
        else:
            result.cursor_after = result.cursor_before
        if result.mode == "window" and result.window_end and result.window_end >= started:
            await self._blocking(
                self.warehouse.commit_cursor, self.partitions_key, started.isoformat()
            )

    async def _fields(self, stats: CallStats) -> dict[str, Any]:
        """The entity's field metadata (`*.fields`), keyed as in filters and `select`.

        When the portal has no fields method for the entity, the metadata is inferred from
        the first page (`_sampled_fields`). The requests are counted in `stats`.
        """
        answer: Any = None
        if self.spec.fields_method:
            try:
                answer = await self.client.call(
                    self.spec.fields_method, dict(self.spec.extra_params), stats=stats
                )
            except BitrixMethodNotFoundError:
                answer = None
        if isinstance(answer, Mapping) and isinstance(answer.get("fields"), Mapping):
            answer = answer["fields"]  # crm.item.fields and tasks wrap the map
        if isinstance(answer, Mapping) and answer:
            return typed_metadata(self.spec.list_method, answer)
        return await self._sampled_fields(stats)

    async def _sampled_fields(self, stats: CallStats) -> dict[str, Any]:
        run = self.client.list(
            self.spec.list_method, dict(self.spec.extra_params), spec=self.spec, order=None
        )
        keys: dict[str, None] = {self.spec.id_field: None}
        rows: list[dict[str, Any]] = []
        async for page in run:
            for row in page.rows:
                keys.update(dict.fromkeys(row))
            rows = page.rows
            break
        stats.merge(run.stats)
        change = self.spec.change_time_field
        kinds: dict[str, Any] = {self.spec.id_field: {"type": "integer"}}
        if change:
            kinds.update(dict.fromkeys((change, self.spec.row_key(change)), {"type": "datetime"}))
        return sampled_metadata(self.spec.list_method, list(keys), rows, known=kinds)

    def _change_row_key(self) -> str | None:
        """The change-time key as it appears in rows (`DATE_MODIFY`, `changedDate`...)."""
        change = self.spec.change_time_field
        return self.spec.row_key(change) if change else None

    @property
    def cursor_key(self) -> str:
        """The key of this entity's cursor in the warehouse state table."""
        return self.table_name

    @property
    def partitions_key(self) -> str:
        """The state key of the latest partition run that reached the present."""
        return partitions_state_key(self.table_name)

    async def _blocking(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a warehouse call in a worker thread, one at a time, so pages keep flowing."""
        async with self._write_lock:
            return await asyncio.to_thread(function, *args, **kwargs)

    async def _plan(self) -> SyncResult:
        """Choose the mode and the window from the options and the stored cursor."""
        result = SyncResult(entity=self.spec.name, table_name=self.table_name, mode="full")
        if self.options.window is not None:
            if not self.spec.change_time_field:
                raise BitrixParameterError(
                    "partitions", f"{self.spec.name} has no change time to partition by"
                )
            result.mode = "window"
            result.window_start, result.window_end = self.options.window
            return result
        if self.options.full_refresh or self.options.reset_cursor:
            return result
        cursor = None
        if self.spec.change_time_field:
            state = await self._blocking(self.warehouse.read_cursor, self.cursor_key)
            cursor = parse_change_time(state.value) if state is not None else None
        result.cursor_before = cursor
        if cursor is not None:
            result.mode = "incremental"
            result.window_start = cursor - self.options.lookback
        return result

    def _params(self, fields: Mapping[str, Any], result: SyncResult) -> dict[str, Any]:
        """List parameters: the spec's own, every field (multi-fields named explicitly), and
        the spec's filter narrowed to the window."""
        params: dict[str, Any] = dict(self.spec.extra_params)
        if self.spec.style == "classic":
            multi = [name for name, meta in fields.items() if _is_multifield(meta)]
            params["select"] = ["*", "UF_*", *multi]
        elif self.spec.style == "task" and fields:
            params["select"] = list(fields)
        if result.window_start is not None or result.window_end is not None:
            params[self._filter_key] = self._window_filter(result)
        return params

    def _window_filter(self, result: SyncResult) -> dict[str, Any]:
        """The spec's own filter plus the window's bounds on the change time.

        A bound the spec's filter already sets on the change time (`>=DATE_MODIFY`...) is
        kept where it is narrower than the window's, so a run never reads rows the spec
        leaves out.
        """
        conditions = dict(self._own_filter)
        change = self.spec.change_time_field
        bounds = ((f">={change}", result.window_start, max), (f"<{change}", result.window_end, min))
        for key, moment, narrower in bounds:
            if moment is None:
                continue
            own_key = find_key(conditions, key)
            if own_key is not None:
                moment = narrower(moment, conditions.pop(own_key))
            conditions[key] = moment
        return conditions

    def _marks_deletes(self, result: SyncResult) -> bool:
        """A full refresh (or a full read of an entity with no change time) sees every id."""
        return result.mode == "full" and (
            self.options.full_refresh or not self.spec.change_time_field
        )

    def _count_row(
        self, row: Mapping[str, Any], result: SyncResult, newest: datetime | None
    ) -> datetime | None:
        """Count a row (per partition too); return the newest change time seen so far."""
        result.rows += 1
        key = self._change_row_key()
        moment = parse_change_time(row.get(key)) if key else None
        if moment is None:
            return newest
        if self.options.partition_key is not None:
            partition = self.options.partition_key(moment)
            if partition is not None:
                result.partition_counts[partition] += 1
        return moment if newest is None or moment > newest else newest

    async def _write(
        self, layout: TableLayout, rows: list[dict[str, Any]], result: SyncResult
    ) -> None:
        counts = await self._blocking(
            self.warehouse.write_chunk, layout, rows, run_id=self._run_id
        )
        result.inserted += counts.inserted
        result.updated += counts.updated
        result.skipped += counts.skipped
        result.unchanged += counts.unchanged
        result.chunks += 1

    async def _confirm_gone(
        self, layout: TableLayout, seen_ids: set[Any], scan_started: datetime, result: SyncResult
    ) -> None:
        """Raise IncompletePaginationError when a row about to be stamped deleted is still
        on the portal: the read missed it although the counts agreed (see `deletes`)."""
        candidates = await self._blocking(
            self.warehouse.deletion_candidates, layout, seen_ids, written_before=scan_started
        )
        await refuse_if_still_listed(
            self.client, self.spec, candidates, seen_ids, stats=result.stats
        )

    async def _portal_ids(self, stats: ListStats) -> set[Any]:
        """Every id the portal holds now (ids only), for the periodic delete check.

        Verified against the portal's count: a short id set would mark live rows deleted.
        """
        params = {**self.spec.extra_params, "select": [self.spec.id_key]}
        run = self.client.list(
            self.spec.list_method, params, spec=self.spec, order=None, verify=True
        )
        ids = {row.get(self.spec.id_field) async for page in run for row in page.rows}
        stats.merge(run.stats)
        return ids




def _is_multifield(meta: Any) -> bool:
    return isinstance(meta, Mapping) and str(meta.get("type", "")).lower() == _MULTIFIELD
