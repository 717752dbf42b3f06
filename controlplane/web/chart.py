"""Layout of the dashboard's share chart: a horizontal bar per ministry and a vertical target line.

Pure geometry over the report rows; the template only draws what this computes, so the page needs
no JavaScript and the chart reads the same numbers as the table below it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from controlplane.compliance.schemas import ShareRow
from controlplane.web.i18n import Translator, format_percent

LABEL_WIDTH = 230  # room for the ministry names left of the bars
PLOT_WIDTH = 520
RIGHT_PAD = 70  # room for a 100% bar's label
TOP = 34  # room for the target line's label
ROW_HEIGHT = 26
BAR_HEIGHT = 16
AXIS_HEIGHT = 28
MIN_BAR = 2.0
MAX_NAME = {"ko": 14, "en": 30}


@dataclass(frozen=True)
class Bar:
    code: str
    name: str
    label: str  # the (possibly shortened) name left of the bar
    share: float | None
    share_text: str
    status: str
    title: str
    y: float
    width: float
    text_y: float
    value_x: float
    href: str


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class ShareChart:
    width: int
    height: int
    plot_x: int
    plot_width: int
    plot_top: int
    plot_bottom: int
    target: float | None
    target_x: float | None
    target_text: str
    bars: list[Bar]
    ticks: list[Tick]


def _short(name: str, limit: int) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def share_chart(rows: Sequence[ShareRow], target: float | None, *, lang: str, t: Translator) -> ShareChart:
    plot_top = TOP
    plot_bottom = TOP + max(1, len(rows)) * ROW_HEIGHT
    bars = []
    for index, row in enumerate(rows):
        name = row.name_en if lang == "en" else row.name_ko
        # A 0% share still shows a sliver in its status colour; no data shows nothing.
        width = 0.0 if row.share is None else max(MIN_BAR, round(PLOT_WIDTH * max(0.0, min(1.0, row.share)), 2))
        y = plot_top + index * ROW_HEIGHT + (ROW_HEIGHT - BAR_HEIGHT) / 2
        share_text = format_percent(row.share) if row.share is not None else t("status.no_data")
        bars.append(Bar(
            code=row.key, name=name, label=_short(name, MAX_NAME.get(lang, 20)), share=row.share,
            share_text=share_text, status=row.status.value,
            title=t("dash.bar_title", name=name, code=row.key, share=format_percent(row.share),
                    target=format_percent(row.target), status=t(f"status.{row.status.value}")),
            y=y, width=width, text_y=y + BAR_HEIGHT / 2, value_x=LABEL_WIDTH + width + 6,
            href=f"/ministries/{row.key}",
        ))
    target_x = None if target is None else round(LABEL_WIDTH + PLOT_WIDTH * max(0.0, min(1.0, target)), 2)
    ticks = [Tick(x=LABEL_WIDTH + PLOT_WIDTH * p / 100, label=f"{p}%") for p in (0, 25, 50, 75, 100)]
    return ShareChart(
        width=LABEL_WIDTH + PLOT_WIDTH + RIGHT_PAD, height=plot_bottom + AXIS_HEIGHT, plot_x=LABEL_WIDTH,
        plot_width=PLOT_WIDTH, plot_top=plot_top, plot_bottom=plot_bottom, target=target, target_x=target_x,
        target_text=t("dash.target_line", target=format_percent(target)), bars=bars, ticks=ticks,
    )
