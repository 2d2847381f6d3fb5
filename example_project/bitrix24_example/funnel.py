"""The sales funnel, computed with pandas from the synced deal and stage tables.

Bitrix24 keeps a deal's current stage, not its history, so "reached a stage" means: the
deal sits at that stage or a later one of the same pipeline. A lost deal is counted at the
pipeline's first stage only (how far it got before it was lost is not in the table).
"""

import json

import pandas as pd

#: Stage semantics in `crm.status`: in progress, won (success), lost (failure).
IN_PROGRESS, WON, LOST = "P", "S", "F"
#: `EXTRA.SEMANTICS` words (b24restdocs api-reference/crm/status/crm-status-list.md).
_EXTRA_SEMANTICS = {"process": IN_PROGRESS, "success": WON, "failure": LOST, "apology": LOST}

STAGE_COLUMNS = [
    "pipeline",
    "pipeline_name",
    "stage_order",
    "stage_id",
    "stage_name",
    "deals_now",
    "deals_reached",
    "value_reached",
    "conversion_from_previous",
    "conversion_from_start",
]
SUMMARY_COLUMNS = [
    "pipeline",
    "pipeline_name",
    "deals",
    "open_deals",
    "won_deals",
    "lost_deals",
    "win_rate",
    "avg_won_value",
    "avg_cycle_days",
    "velocity_per_day",
]


def pipeline_names(pipelines: pd.DataFrame | None) -> dict[int, str]:
    """{pipeline id: name} from the synced `crm.category` rows (deleted ones left out)."""
    if pipelines is None or pipelines.empty:
        return {}
    if "_deleted_at" in pipelines:
        pipelines = pipelines[pipelines["_deleted_at"].isna()]
    return {int(i): str(name) for i, name in zip(pipelines["id"], pipelines["name"], strict=True)}


def pipeline_name(pipeline: int, names: dict[int, str]) -> str:
    """The pipeline's name on the portal; `General` / `Pipeline <id>` when it is not known."""
    return names.get(pipeline) or ("General" if pipeline == 0 else f"Pipeline {pipeline}")


def deal_stages(stages: pd.DataFrame) -> pd.DataFrame:
    """The deal stages of every pipeline from `crm.status` rows, in pipeline order, with
    their `semantics` as P / S / F.

    Real portals send `"SEMANTICS": null` for in-progress stages and the process semantics
    under `EXTRA` (`{"SEMANTICS": "process", ...}`, synced as JSON text); a stage with
    neither is in progress."""
    deal = stages[stages["entity_id"].str.match(r"^DEAL_STAGE(_\d+)?$")].copy()
    deal["pipeline"] = deal["category_id"].fillna(0).astype(int)
    semantics = deal["semantics"] if "semantics" in deal else pd.Series(None, index=deal.index)
    if "extra" in deal:
        semantics = deal["extra"].map(_extra_semantics).fillna(semantics)
    deal["semantics"] = semantics.fillna(IN_PROGRESS)
    return deal.sort_values(["pipeline", "sort"]).reset_index(drop=True)


def _extra_semantics(extra: object) -> str | None:
    """P / S / F from a stage's `EXTRA` (a JSON text or a mapping), None when absent."""
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except ValueError:
            return None
    word = extra.get("SEMANTICS") if isinstance(extra, dict) else None
    return _EXTRA_SEMANTICS.get(str(word).lower()) if word else None


def stage_funnel(
    deals: pd.DataFrame, stages: pd.DataFrame, *, pipelines: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per pipeline and open/won stage: deals now, reached, value, conversions."""
    live = _live(deals)
    names = pipeline_names(pipelines)
    rows = []
    for pipeline, steps in deal_stages(stages).groupby("pipeline", sort=True):
        mine = live[live["category_id"] == pipeline]
        lost = mine["stage_id"].isin(steps.loc[steps["semantics"] == LOST, "status_id"])
        funnel = steps[steps["semantics"].isin([IN_PROGRESS, WON])]
        order = dict(zip(funnel["status_id"], range(len(funnel)), strict=True))
        position = mine["stage_id"].map(order)
        previous = start = None
        for index, step in enumerate(funnel.itertuples()):
            reached = (position >= index) | (lost if index == 0 else False)
            count = int(reached.sum())
            start = count if start is None else start
            rows.append(
                {
                    "pipeline": int(pipeline),
                    "pipeline_name": pipeline_name(int(pipeline), names),
                    "stage_order": index + 1,
                    "stage_id": step.status_id,
                    "stage_name": step.name,
                    "deals_now": int((position == index).sum()),
                    "deals_reached": count,
                    "value_reached": round(float(mine.loc[reached, "opportunity"].sum()), 2),
                    "conversion_from_previous": _ratio(count, previous),
                    "conversion_from_start": _ratio(count, start),
                }
            )
            previous = count
    return pd.DataFrame(rows, columns=STAGE_COLUMNS)


def pipeline_summary(
    deals: pd.DataFrame, stages: pd.DataFrame, *, pipelines: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per pipeline: win rate, average won value, cycle length and sales velocity.

    Sales velocity = open deals x win rate x average won value / average days to win:
    the value the pipeline is expected to turn into revenue per day.
    """
    live = _live(deals)
    names = pipeline_names(pipelines)
    semantics = deal_stages(stages).set_index("status_id")["semantics"]
    live = live.assign(semantics=live["stage_id"].map(semantics).fillna(IN_PROGRESS))
    rows = []
    for pipeline, mine in live.groupby("category_id", sort=True):
        won = mine[mine["semantics"] == WON]
        closed = len(won) + int((mine["semantics"] == LOST).sum())
        open_deals = int((mine["semantics"] == IN_PROGRESS).sum())
        cycle = (_utc(won["closedate"]) - _utc(won["date_create"])).dt.days
        cycle = cycle[cycle >= 0]
        win_rate = _ratio(len(won), closed)
        avg_value = float(won["opportunity"].mean()) if len(won) else None
        avg_days = float(cycle.mean()) if len(cycle) else None
        velocity = None
        if win_rate is not None and avg_value is not None and avg_days:
            velocity = round(open_deals * win_rate * avg_value / avg_days, 2)
        rows.append(
            {
                "pipeline": int(pipeline),
                "pipeline_name": pipeline_name(int(pipeline), names),
                "deals": len(mine),
                "open_deals": open_deals,
                "won_deals": len(won),
                "lost_deals": closed - len(won),
                "win_rate": win_rate,
                "avg_won_value": None if avg_value is None else round(avg_value, 2),
                "avg_cycle_days": None if avg_days is None else round(avg_days, 1),
                "velocity_per_day": velocity,
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _live(deals: pd.DataFrame) -> pd.DataFrame:
    """Deals the portal still lists (the warehouse keeps deleted ones, stamped)."""
    if "_deleted_at" in deals:
        deals = deals[deals["_deleted_at"].isna()]
    return deals.assign(category_id=deals["category_id"].fillna(0).astype(int))


def _utc(moments: pd.Series) -> pd.Series:
    """Times in UTC: PostgreSQL returns them zone-aware, SQLite and MariaDB naive (UTC)."""
    return pd.to_datetime(moments, utc=True)


def _ratio(part: int, whole: int | None) -> float | None:
    return round(part / whole, 4) if whole else None
