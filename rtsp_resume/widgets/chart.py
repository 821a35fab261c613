"""A small SVG canvas in data coordinates, for the live plots (no plotting library).

The plots are drawn as SVG text into ``ipywidgets.HTML``: :class:`_Chart` maps data to
pixels and draws lines, markers, labels, axes and a legend.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable


class _Chart:
    """A little SVG canvas with data coordinates: just what the two plots need."""

    def __init__(self, width: int, height: int, x_range: tuple[float, float],
                 y_range: tuple[float, float], margin: tuple[int, int, int, int]) -> None:
        self.width, self.height = width, height
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        self.left, self.right, self.top, self.bottom = margin
        self.parts: list[str] = []

    def x(self, value: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return self.left + (value - self.x0) / span * (self.width - self.left - self.right)

    def y(self, value: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return self.height - self.bottom - (value - self.y0) / span * (
            self.height - self.top - self.bottom)

    def add(self, svg: str) -> None:
        self.parts.append(svg)

    def text(self, x: float, y: float, text: str, size: int = 11, color: str = "#333",
             anchor: str = "start", weight: str = "normal") -> None:
        self.add(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{color}" '
                 f'text-anchor="{anchor}" font-weight="{weight}">{html.escape(text)}</text>')

    def vline(self, t: float, color: str, label: str = "", dash: str = "",
              width: float = 1.5, label_y: float | None = None) -> None:
        """A vertical line at ``t``, labelled at ``label_y`` (pixels; default: top)."""
        if not self.x0 <= t <= self.x1:
            return
        x = self.x(t)
        y = self.top - 4 if label_y is None else label_y
        style = f' stroke-dasharray="{dash}"' if dash else ""
        self.add(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y - 10}" '
                 f'y2="{self.height - self.bottom}" stroke="{color}" '
                 f'stroke-width="{width}"{style}/>')
        if label:
            self.text(x + 3, y, label, 11, color, weight="bold")

    def marker(self, x: float, y: float, shape: str, color: str, size: float = 5,
               title: str = "") -> None:
        px, py = self.x(x), self.y(y)
        tip = f"<title>{html.escape(title)}</title>" if title else ""
        if shape == "dot":
            self.add(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{size}" fill="{color}">{tip}'
                     "</circle>")
        elif shape == "ring":
            self.add(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{size}" fill="none" '
                     f'stroke="{color}" stroke-width="1.5">{tip}</circle>')
        elif shape == "cross":
            s = size
            self.add(f'<path d="M{px - s:.1f},{py - s:.1f} L{px + s:.1f},{py + s:.1f} '
                     f'M{px - s:.1f},{py + s:.1f} L{px + s:.1f},{py - s:.1f}" '
                     f'stroke="{color}" stroke-width="2.2">{tip}</path>')
        elif shape in ("up", "down", "diamond"):
            s = size + 1
            points = {
                "up": [(px, py - s), (px - s, py + s * 0.8), (px + s, py + s * 0.8)],
                "down": [(px, py + s), (px - s, py - s * 0.8), (px + s, py - s * 0.8)],
                "diamond": [(px, py - s), (px + s, py), (px, py + s), (px - s, py)],
            }[shape]
            text = " ".join(f"{a:.1f},{b:.1f}" for a, b in points)
            self.add(f'<polygon points="{text}" fill="{color}">{tip}</polygon>')

    def x_axis(self, label: str) -> None:
        base = self.height - self.bottom
        self.add(f'<line x1="{self.left}" x2="{self.width - self.right}" y1="{base}" '
                 f'y2="{base}" stroke="#888"/>')
        for tick in _ticks(self.x0, self.x1):
            x = self.x(tick)
            self.add(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{base}" y2="{base + 4}" '
                     f'stroke="#888"/>')
            self.text(x, base + 15, f"{tick:g}", 10, "#555", "middle")
        self.text(self.width - self.right, base + 28, label, 11, "#555", "end")

    def y_axis(self, label: str) -> None:
        self.add(f'<line x1="{self.left}" x2="{self.left}" y1="{self.top}" '
                 f'y2="{self.height - self.bottom}" stroke="#888"/>')
        for tick in _ticks(self.y0, self.y1):
            y = self.y(tick)
            self.add(f'<line x1="{self.left - 4}" x2="{self.width - self.right}" '
                     f'y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
            self.text(self.left - 7, y + 3, f"{tick:g}", 10, "#555", "end")
        self.text(12, self.top - 8, label, 11, "#555")

    def legend(self, entries: Iterable[tuple[str, str]], y: float, gap: float) -> None:
        """Coloured ``(color, text)`` entries in a row from the left margin, at ``y``
        (pixels), ``gap`` pixels apart."""
        x = self.left
        for color, text in entries:
            self.text(x, y, text, 11, color, weight="bold")
            x += 6.3 * len(text) + gap  # about the width of 11 px bold text

    def render(self) -> str:
        # Scales down with the output area (a narrow notebook), never up.
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" '
                f'height="{self.height}" viewBox="0 0 {self.width} {self.height}" '
                f'style="font-family:sans-serif;background:#fff;width:100%;'
                f'max-width:{self.width}px;height:auto">' + "".join(self.parts) + "</svg>")


def _ticks(low: float, high: float, wanted: int = 8) -> list[float]:
    span = high - low
    if span <= 0:
        return [low]
    raw = span / wanted
    step = min((s * 10 ** math.floor(math.log10(raw)) for s in (1, 2, 5, 10)),
               key=lambda s: abs(s - raw) if s >= raw else math.inf)
    first = math.ceil(low / step) * step
    count = int((high - first) / step + 1e-9) + 1
    return [round(first + i * step, 6) for i in range(count)]
