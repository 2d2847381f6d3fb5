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
#: Layouts of the inline funnel, tried in order: (stage name width, widest bar).
_LAYOUTS = ((14, 16), (10, 12), (0, 12))


def funnel_markdown(funnel: pd.DataFrame, summary: pd.DataFrame) -> str:
    """The funnel drawn in text, short enough for the UI to show inline where the asset's
    latest materialisation is: per pipeline its win rate, then one centred bar per stage
    as wide as the deals reaching it. Names shorten, then pipelines are left out (saying
    how many: the PNG `chart` has them all) to stay under `INLINE_MARKDOWN`."""
    pipelines = list(zip(summary["pipeline"], summary["pipeline_name"], summary["win_rate"],
                         strict=True))  # fmt: skip
    for name_width, widest in _LAYOUTS:
        blocks = [_pipeline_lines(funnel, p, name_width, widest) for p in pipelines]
        text = _fenced(line for block in blocks for line in block)
        if len(text) < INLINE_MARKDOWN:
            return text
    shown: list[str] = []
    for count, block in enumerate(blocks):
        more = f"... {len(blocks) - count} more pipelines: see the chart"
        if len(_fenced([*shown, *block, more])) >= INLINE_MARKDOWN:
            return _fenced([*shown, more])
        shown += block
    return _fenced(shown)


def _pipeline_lines(
    funnel: pd.DataFrame, pipeline: tuple, name_width: int, widest: int
) -> list[str]:
    """A pipeline's heading and its stages' bars (`name_width` 0: no stage names)."""
    number, name, win_rate = pipeline
    stages = funnel[funnel["pipeline"] == number].sort_values("stage_order")
    heading = str(name) if pd.isna(win_rate) else f"{name}: win rate {win_rate:.0%}"
    counts = list(stages["deals_reached"])
    most = max(counts, default=0) or 1
    lines = [heading]
    for stage, count in zip(stages["stage_name"], counts, strict=True):
        width = max(round(count / most * widest), 1 if count else 0)
        bar = ("█" * width).center(widest)
        label = f"{str(stage)[:name_width]:<{name_width}} " if name_width else ""
        lines.append(f"  {label}{bar} {count}")
    return lines


def _fenced(lines) -> str:  # noqa: ANN001
    """`lines` as a Markdown code block: monospaced, so the bars line up."""
    return "```\n" + "\n".join(lines) + "\n```"
