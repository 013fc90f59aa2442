"""Launches over time as a small SVG bar chart, rendered on the server (no script needed).

The registry keeps launches per minute; the chart groups them into at most ``BARS`` bars
over the span from ``span`` seconds before ``now`` (default the last 3 hours: a lecture and
the time before it), so a class's rush shows as one tall bar and a quiet week as none.
"""

from datetime import UTC, datetime
from html import escape

BARS = 36
W, H, LEFT, RIGHT, BOTTOM, TOP = 640, 200, 40, 24, 28, 12


def launches_svg(buckets: list[tuple[int, int]], now: float, span: float = 3 * 3600,
                 tz=UTC) -> str:
    start = now - span
    width = span / BARS
    bars = [0] * BARS
    for t, n in buckets:
        if start <= t < now + 60:
            bars[min(BARS - 1, int((t - start) // width))] += n
    peak = max(bars) or 1
    plot_w, plot_h = W - LEFT - RIGHT, H - BOTTOM - TOP
    bar_w = plot_w / BARS
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="launch-plot" role="img" '
             f'viewBox="0 0 {W} {H}" width="{W}" height="{H}">',
             f'<title>Launches per {width / 60:g} minutes, last {span / 3600:g} h: '
             f'{sum(bars)} in all</title>',
             f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{W - RIGHT}" y2="{TOP + plot_h}" '
             'class="axis"/>',
             f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" class="axis"/>',
             f'<text x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end" class="tick">{peak}</text>',
             f'<text x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end" class="tick">0</text>']
    for i, n in enumerate(bars):
        if not n:
            continue
        h = plot_h * n / peak
        x = LEFT + i * bar_w + 1
        parts.append(f'<rect class="bar" x="{x:.1f}" y="{TOP + plot_h - h:.1f}" '
                     f'width="{bar_w - 2:.1f}" height="{h:.1f}" data-launches="{n}">'
                     f'<title>{n} launches</title></rect>')
    for i in range(0, BARS + 1, BARS // 6):
        t = datetime.fromtimestamp(start + i * width, tz)
        x = LEFT + i * bar_w
        parts.append(f'<text x="{x:.1f}" y="{H - 8}" text-anchor="middle" class="tick">'
                     f'{escape(t.strftime("%H:%M"))}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
