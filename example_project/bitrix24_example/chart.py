"""The funnel chart: one panel per pipeline, bars as wide as the deals that reached a stage."""

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: render straight to PNG

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

_BAR = "#2FC6F6"
_WON = "#7BD500"


def render_funnel_png(funnel: pd.DataFrame, summary: pd.DataFrame, *, path: Path) -> bytes:
    """Draw the funnel of every pipeline into `path` (PNG) and return the PNG bytes."""
    pipelines = list(summary["pipeline"]) or [0]
    figure, axes = plt.subplots(
        1, len(pipelines), figsize=(4.4 * len(pipelines), 4.2), squeeze=False
    )
    for axis, pipeline in zip(axes[0], pipelines, strict=True):
        _draw_pipeline(axis, funnel[funnel["pipeline"] == pipeline], summary, pipeline)
    figure.suptitle("Sales funnel by pipeline: deals reaching each stage", fontsize=13)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    png = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return png


def _draw_pipeline(axis, stages: pd.DataFrame, summary: pd.DataFrame, pipeline: int) -> None:  # noqa: ANN001
    row = summary[summary["pipeline"] == pipeline]
    counts = list(stages["deals_reached"])
    widest = max(counts, default=0) or 1
    positions = range(len(counts))[::-1]
    colours = [_BAR] * (len(counts) - 1) + [_WON] * bool(counts)  # the last stage is "won"
    lefts = [(widest - count) / 2 for count in counts]
    axis.barh(list(positions), counts, left=lefts, color=colours, height=0.8)
    for y, count, left, share in zip(
        positions, counts, lefts, stages["conversion_from_previous"], strict=True
    ):
        label = f"{count}" if pd.isna(share) else f"{count}  ({share:.0%})"
        axis.text(left + count / 2, y, label, ha="center", va="center", fontsize=9)
    axis.set_yticks(list(positions), list(stages["stage_name"]))
    axis.set_xticks([])
    for side in ("top", "right", "bottom"):
        axis.spines[side].set_visible(False)
    title = str(row["pipeline_name"].iloc[0]) if len(row) else f"Pipeline {pipeline}"
    if len(row) and pd.notna(row["win_rate"].iloc[0]):
        title += f"\nwin rate {row['win_rate'].iloc[0]:.0%}"
        if pd.notna(row["avg_cycle_days"].iloc[0]):
            title += f", {row['avg_cycle_days'].iloc[0]:.0f} days to win"
        if pd.notna(row["velocity_per_day"].iloc[0]):
            title += f"\nvelocity {row['velocity_per_day'].iloc[0]:,.0f} per day"
    axis.set_title(title, fontsize=11)


#: The Dagster UI shows a Markdown entry inline only below this length (longer ones, such as
#: the PNG chart as a data URI, sit behind "[Show Markdown]").
INLINE_MARKDOWN = 1000


def funnel_markdown(funnel: pd.DataFrame, summary: pd.DataFrame) -> str:
    """The funnel as short Markdown the UI shows inline: per pipeline, the deals reaching
    each stage in order (stage names dropped if that is too long)."""
    for named in (True, False):
        lines = []
        for pipeline, name in zip(summary["pipeline"], summary["pipeline_name"], strict=True):
            stages = funnel[funnel["pipeline"] == pipeline].sort_values("stage_order")
            steps = [
                f"{stage} {reached}" if named else str(reached)
                for stage, reached in zip(
                    stages["stage_name"], stages["deals_reached"], strict=True
                )
            ]
            lines.append(f"**{name}**: " + " → ".join(steps))
        text = "\n\n".join(lines)
        if len(text) < INLINE_MARKDOWN:
            return text
    return text[: INLINE_MARKDOWN - 1]
