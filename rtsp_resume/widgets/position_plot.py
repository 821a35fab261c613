"""The position plot: what the viewer saw against the two position estimates
(``06_position_estimators.ipynb``)."""

from __future__ import annotations

import html
import time
from typing import Any

import ipywidgets as w

from rtsp_resume.widgets.chart import _Chart
from rtsp_resume.widgets.display import _CSS, PLOT_REFRESH, Shown, _table
from rtsp_resume.widgets.terminal import Terminal


class PositionPlot(Shown):
    """What the viewer saw against the two position estimates, over several cuts.

    The grey line is the truth: the npt of every frame the terminal's players showed,
    against wall time. At each interruption: the last frame shown (black diamond), the
    embodiment's ``frames_sent`` (red, above it: frames sent into the dead link and never
    seen) and ``confirmed`` (blue, at or below it: provably reached, minus an allowance).
    """

    WIDTH, HEIGHT = 880, 330

    def __init__(self, terminal: Terminal) -> None:
        self.terminal = terminal
        self.html = w.HTML("<i>no frames yet</i>")
        self.table = w.HTML()
        self.widget = w.VBox([self.html, self.table])
        self._drawn = 0.0
        self._signature: Any = None
        terminal.stage.every_tick(self.refresh)

    def refresh(self, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._drawn < PLOT_REFRESH * 2:
            return
        players = list(self.terminal.players)
        signature = (tuple(len(p.frames) for p in players), len(self.terminal.episodes),
                     tuple(e.closed for e in self.terminal.episodes))
        if not players or (signature == self._signature and not force):
            return
        self._signature = signature
        self._drawn = now
        self.html.value = self.svg()
        self.table.value = self.rows_html()

    def svg(self) -> str:
        players = list(self.terminal.players)
        lines = [[(f.wallclock, f.pts) for f in list(p.frames)] for p in players]
        points = [pt for line in lines for pt in line]
        episodes = [e for e in self.terminal.episodes if e.closed]
        if not points:
            return "<i>no frames yet</i>"
        origin = min(t for t, _ in points)
        end = max([t for t, _ in points] + [e.interruption.detected_at for e in episodes])
        top = max([v for _, v in points] + [e.interruption.frames_sent for e in episodes])
        chart = _Chart(self.WIDTH, self.HEIGHT, (0, end - origin + 0.5), (0, top + 0.8),
                       (55, 15, 26, 58))
        for line in lines:
            if len(line) > 1:
                path = " ".join(f"{chart.x(t - origin):.1f},{chart.y(v):.1f}" for t, v in line)
                chart.add(f'<polyline points="{path}" fill="none" stroke="#9e9e9e" '
                          f'stroke-width="2"/>')
        for number, episode in enumerate(episodes, 1):
            event = episode.interruption
            at = event.detected_at - origin
            if episode.truth is not None:
                seen = episode.truth
                x0 = seen.wallclock - origin
                chart.add(f'<line x1="{chart.x(x0):.1f}" x2="{chart.x(at):.1f}" '
                          f'y1="{chart.y(seen.pts):.1f}" y2="{chart.y(seen.pts):.1f}" '
                          f'stroke="#111" stroke-dasharray="3,3"/>')
                chart.marker(x0, seen.pts, "diamond", "#111", 5,
                             f"cut {number}: last frame shown {seen.pts:.2f} s")
            chart.marker(at, event.frames_sent, "up", "#e53935", 5,
                         f"cut {number}: frames_sent {event.frames_sent:.2f} s")
            chart.marker(at, event.confirmed, "down", "#1e88e5", 5,
                         f"cut {number}: confirmed {event.confirmed:.2f} s")
            chart.text(chart.x(at) + 8, chart.y(event.frames_sent) + 4, f"cut {number}", 10,
                       "#555")
        chart.x_axis("wall-clock seconds")
        chart.y_axis("play position (npt, s)")
        legend = [("#9e9e9e", "— frames shown (the truth)"),
                  ("#111", "◆ last shown before the cut"),
                  ("#e53935", "▲ frames_sent (literal rule)"),
                  ("#1e88e5", "▼ confirmed (default)")]
        chart.legend(legend, chart.height - 6, 22)
        return chart.render()

    def rows_html(self) -> str:
        rows = []
        for number, episode in enumerate(self.terminal.episodes, 1):
            if not episode.closed or episode.truth is None:
                continue
            event, truth = episode.interruption, episode.truth.pts
            check = episode.check
            rows.append((
                str(number), f"{truth:.2f}",
                f"{event.frames_sent:.2f} ({event.frames_sent - truth:+.2f})",
                f"{event.confirmed:.2f} ({event.confirmed - truth:+.2f})",
                html.escape(event.estimator),
                "–" if check is None else html.escape(check.describe()),
            ))
        return _CSS + _table(rows, ("cut", "last shown (s)", "frames_sent (s)",
                                    "confirmed (s)", "bookmark used", "after the resume"))

    def snapshot(self) -> Any:
        from IPython.display import HTML

        self.refresh(force=True)
        return HTML(self.html.value + self.table.value)
