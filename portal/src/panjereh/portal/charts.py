"""Charts drawn on the server as SVG: no script, no chart library, readable without colour.

Each chart is an ``<svg role="img">`` with a ``<title>`` and ``<desc>`` naming every value, so
a screen reader hears the numbers; the page also writes them beside the chart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    shown: str  # the value as people read it (Persian digits, a percent sign)


def bar_chart(
    chart_id: str, title: str, bars: Sequence[Bar], *, maximum: float | None = None, rtl: bool
) -> Markup:
    """Horizontal bars, one per value, each under its label, from the reading side."""
    row, width = 44, 400
    plot = width - 64
    top = max([maximum or 0.0, *(b.value for b in bars), 1e-9])
    height = row * len(bars) + 8
    parts = [
        f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-labelledby="{escape(chart_id)}-t {escape(chart_id)}-d" direction="ltr" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{escape(chart_id)}-t">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-d">'
        f"{escape(('؛ ' if rtl else '; ').join(f'{b.label}: {b.shown}' for b in bars))}</desc>",
    ]
    for index, bar in enumerate(bars):
        y = index * row + 4
        length = max(2.0, plot * bar.value / top) if bar.value else 0.0
        if rtl:
            edge, anchor = width - 4, "end"
            bar_x = edge - length
            value_x = bar_x - 6
        else:
            edge, anchor = 4, "start"
            bar_x = edge
            value_x = bar_x + length + 6
        # the label on its own line above the bar: long labels never run into the bars
        parts.append(
            f'<text x="{edge}" y="{y + 14}" text-anchor="{anchor}" class="chart-label">'
            f"{escape(bar.label)}</text>"
            f'<rect x="{bar_x:.1f}" y="{y + 20}" width="{length:.1f}" height="16" rx="3" '
            f'class="chart-bar"/>'
            f'<text x="{value_x:.1f}" y="{y + 33}" text-anchor="{anchor}" '
            f'class="chart-value">{escape(bar.shown)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every piece above is escaped
