"""Recorded contract tests: the engine against recorded Bitrix24 exchanges (vcrpy cassettes).

CI only replays the committed cassettes (``record_mode="none"``: an unrecorded request
fails). Re-record:

* against a real portal (read-only calls; secrets and the host are scrubbed before writing)::

      BITRIX24_RECORD=1 BITRIX24_WEBHOOK_URL=https://<portal>/rest/<user>/<code>/ \\
          .venv/bin/pytest tests/engine/contract

* against the emulator (how the committed cassettes were made)::

      BITRIX24_RECORD=emulator .venv/bin/pytest tests/engine/contract

Assertions are about shapes, never about one portal's data, so both recordings pass.
"""

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import vcr

from bitrix_core.auth import WebhookAuth
from bitrix_core.encoding import encode_command
from bitrix_core.errors import BitrixMethodNotFoundError
from bitrix_core.transport import Transport
from tests.engine.contract.recorder import PLACEHOLDER_WEBHOOK, contract_vcr

RECORD = os.environ.get("BITRIX24_RECORD", "")
SECTIONS = ("result", "result_error", "result_total", "result_next", "result_time")


@dataclass
class Source:
    auth: WebhookAuth
    vcr: vcr.VCR


@pytest.fixture
async def source() -> AsyncIterator[Source]:
    if not RECORD:
        yield Source(WebhookAuth(PLACEHOLDER_WEBHOOK), contract_vcr(record=False))
    elif RECORD == "emulator":
        from bitrix_core.emulator.portal import EmulatedPortal

        async with EmulatedPortal(seed=1, deals=75, plan="unlimited") as portal:
            recorder = contract_vcr(record=True, origins=[portal.base_url])
            yield Source(WebhookAuth(portal.webhook_url), recorder)
    else:
        url = os.environ.get("BITRIX24_WEBHOOK_URL", "")
        if not url:
            pytest.fail("BITRIX24_RECORD=1 needs BITRIX24_WEBHOOK_URL")
        auth = WebhookAuth(url)
        yield Source(auth, contract_vcr(record=True, origins=[url]))


async def _post(source: Source, cassette: str, method: str, params: dict) -> dict:
    with source.vcr.use_cassette(f"{cassette}.yaml"):
        async with Transport(timeout=60) as transport:
            return await transport.post(source.auth.method_url(method), params, method=method)


def _assert_time_block(block: dict) -> None:
    for key in ("start", "finish", "duration", "processing", "date_start", "date_finish"):
        assert key in block
    assert block["finish"] >= block["start"]
    assert ("operating" in block) == ("operating_reset_at" in block)


async def test_list_page_has_rows_next_total_and_time(source: Source):
    params = {"order": {"ID": "ASC"}, "select": ["ID", "TITLE", "DATE_MODIFY"], "start": 0}
    envelope = await _post(source, "deal_list_first_page", "crm.deal.list", params)
    assert list(envelope)[:1] == ["result"]
    rows = envelope["result"]
    assert isinstance(rows, list) and 0 < len(rows) <= 50
    assert all(isinstance(row["ID"], str) and set(row) >= {"ID", "TITLE"} for row in rows)
    ids = [int(row["ID"]) for row in rows]
    assert ids == sorted(ids)
    assert isinstance(envelope["total"], int) and envelope["total"] >= len(rows)
    assert ("next" in envelope) == (envelope["total"] > 50)
    _assert_time_block(envelope["time"])


async def test_start_minus_one_skips_the_count(source: Source):
    params = {"order": {"ID": "ASC"}, "filter": {">ID": 0}, "select": ["ID"], "start": -1}
    envelope = await _post(source, "deal_list_keyset", "crm.deal.list", params)
    assert "next" not in envelope
    assert envelope.get("total", 0) == 0
    assert all(int(row["ID"]) > 0 for row in envelope["result"])


async def test_batch_answers_in_five_sections_and_isolates_a_failing_command(source: Source):
    cmd = {
        "page": encode_command(
            "crm.deal.list", {"order": {"ID": "ASC"}, "select": ["ID"], "start": 0}
        ),
        "fields": encode_command("crm.deal.fields", {}),
        "broken": encode_command("crm.nosuch.method", {}),
    }
    envelope = await _post(source, "batch_mixed", "batch", {"halt": 0, "cmd": cmd})
    sections = envelope["result"]
    assert set(SECTIONS) <= set(sections)
    for name in SECTIONS:
        assert isinstance(sections[name], dict | list)
        if isinstance(sections[name], list):
            assert sections[name] == []  # PHP writes an empty map as []
    assert isinstance(sections["result"]["page"], list)
    assert isinstance(sections["result"]["fields"], dict)
    assert sections["result_error"]["broken"]["error"]
    assert "broken" not in (sections["result"] or {})
    assert isinstance(sections["result_total"]["page"], int)
    _assert_time_block(sections["result_time"]["page"])


async def test_field_metadata_describes_every_field(source: Source):
    envelope = await _post(source, "deal_fields", "crm.deal.fields", {})
    fields = envelope["result"]
    assert {"ID", "TITLE", "STAGE_ID", "DATE_MODIFY"} <= set(fields)
    for meta in fields.values():
        assert isinstance(meta["type"], str)
        assert isinstance(meta["isRequired"], bool) and isinstance(meta["isMultiple"], bool)


async def test_unknown_method_is_method_not_found_with_a_redacted_url(source: Source):
    with pytest.raises(BitrixMethodNotFoundError) as info:
        await _post(source, "unknown_method", "crm.nosuch.method", {})
    assert info.value.status == 404
    assert info.value.url is not None and "/rest/1/***/" in info.value.url
