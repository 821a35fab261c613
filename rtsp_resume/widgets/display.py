"""How the dashboards show things: pictures, HTML tables, messages as fields, a live log,
and :class:`Chart`, a small SVG canvas for the live plots (no plotting library needed)."""

from __future__ import annotations

import html
import json
import math
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from fractions import Fraction
from functools import cache
from typing import Any

import av
import ipywidgets as w
import numpy as np
from IPython.display import HTML

from rtsp_resume.player import ShownFrame

STOPPED = "stopped: run the first cell again"
# Unix times among a message's fields: shown with the time of day and what they mark.
WHEN = {"InterruptedAt": "when the streaming server declared the interruption"}
PICTURE_WIDTH = 320  # pixels of the pictures sent to the browser (the clip is 640x360)
CSS = ("<style>.rr-table td, .rr-table th {border:1px solid #ddd; padding:2px 6px; "
       "text-align:left; vertical-align:top} .rr-table th {background:#f3f3f3} "
       ".rr-ok {color:#1a7f37; font-weight:bold} .rr-bad {color:#c62828; font-weight:bold}"
       "</style>")


def compact(text: str) -> str:  # JupyterLab's 28 px line height is too airy for a dashboard
    return f'<div style="line-height:1.4">{text}</div>'


def table(rows: Iterable[Sequence[Any]], header: Sequence[str]) -> str:
    """An HTML table of cells that are HTML already."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return (f'{CSS}<table class="rr-table" style="border-collapse:collapse;font-size:12px">'
            f"<tr>{head}</tr>{body}</table>")


def shorten(value: Any, keep: int = 10) -> str:
    """Long tokens as ``abcdefghij…wxyz`` (in a URL, only its token); the rest as text."""
    text = value if isinstance(value, str) else json.dumps(value)
    base, sep, token = text.partition("?token=")
    if sep:
        return base + sep + shorten(token, keep)
    return text if len(text) <= 2 * keep + 6 else f"{text[:keep]}…{text[-4:]}"


def encode_jpeg(frame: av.VideoFrame) -> bytes:
    """JPEG bytes of a decoded picture (PyAV's mjpeg encoder, full-range YUV)."""
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height, encoder.pix_fmt = frame.width, frame.height, "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    picture = frame.reformat(format="yuvj420p")
    picture.pts = 0
    return b"".join(bytes(p) for p in encoder.encode(picture) + encoder.encode(None))


@cache  # the same few widths, over and over
def placeholder(width: int) -> bytes:
    """A dark grey 16:9 JPEG: the picture before there is one."""
    grey = np.full((width * 9 // 16 // 2 * 2, width, 3), 48, dtype=np.uint8)
    return encode_jpeg(av.VideoFrame.from_ndarray(grey, format="rgb24"))


def picture(frame: ShownFrame | None, width: int = PICTURE_WIDTH) -> bytes:
    """A shown frame as a small JPEG for ``ipywidgets.Image`` (the placeholder for None)."""
    if frame is None or frame.image is None:
        return placeholder(width)
    height = max(2, round(frame.image.height * width / frame.image.width / 2) * 2)
    return encode_jpeg(frame.image.reformat(width=width, height=height))


def image(css_class: str, width: int = PICTURE_WIDTH) -> w.Image:
    shown = w.Image(value=placeholder(width), format="jpeg", layout={"width": f"{width}px"})
    shown.add_class(css_class)
    return shown


class EventLog(w.Output):
    """A log with the seconds since it began, written from any thread."""

    def __init__(self) -> None:
        super().__init__(layout={"max_height": "220px", "overflow": "auto", "width": "100%",
                                 "border": "1px solid #ddd"})
        self.t0, self._lock = time.time(), threading.Lock()

    def say(self, text: str, at: float | None = None) -> None:
        line = f"[{(time.time() if at is None else at) - self.t0:6.2f} s] {text}\n"
        with self._lock:  # not print(): a thread's print lands in whichever cell runs
            self.append_stdout(line)


class FieldsView(w.HTML):
    """A message (BookMarkReq, BookMarkResp, ...) as a table of its fields."""

    def __init__(self, caption: str) -> None:
        super().__init__(compact(f"<b>{html.escape(caption)}</b><br><i>nothing yet</i>"))
        self.caption = caption
        self.fields: dict[str, Any] = {}
        self.add_class("rr-fields")

    def show(self, fields: dict[str, Any]) -> None:
        self.fields = dict(fields)
        rows = [(f"<code>{html.escape(name)}</code>",
                 f'<code title="{html.escape(str(value))}">{html.escape(shorten(value))}</code>'
                 + (f" ({datetime.fromtimestamp(float(value), UTC):%H:%M:%S} UTC, {WHEN[name]})"
                    if name in WHEN else ""))
                for name, value in self.fields.items()]
        self.value = f"<b>{html.escape(self.caption)}</b>" + table(rows, ("field", "value"))

    def snapshot(self) -> HTML:  # the message as it is now, a static picture for the output
        return HTML(self.value)


class Chart:
    """An SVG canvas: ``x_range`` by ``y_range`` drawn into ``size`` pixels inside
    ``margin`` (left, right, top, bottom). Arguments are data coordinates, ``px`` pixels."""

    def __init__(self, size: tuple[int, int], x_range: tuple[float, float],
                 y_range: tuple[float, float], margin: tuple[int, int, int, int]) -> None:
        (self.width, self.height), (self.x0, self.x1), (self.y0, self.y1) = size, x_range, y_range
        self.left, self.right, self.top, self.bottom = margin
        self.parts: list[str] = []

    def x(self, x: float) -> float:
        inner = self.width - self.left - self.right
        return self.left + (x - self.x0) / ((self.x1 - self.x0) or 1) * inner

    def y(self, y: float) -> float:
        inner = self.height - self.top - self.bottom
        return self.height - self.bottom - (y - self.y0) / ((self.y1 - self.y0) or 1) * inner

    def text(self, px: float, py: float, text: str, color: str = "#333", size: int = 11,
             anchor: str = "start", bold: bool = False, title: str = "") -> None:
        tip = f"<title>{html.escape(title)}</title>" if title else ""
        self.parts.append(f'<text x="{px:.1f}" y="{py:.1f}" font-size="{size}" fill="{color}" '
                          f'text-anchor="{anchor}" font-weight="{700 if bold else 400}">'
                          f"{html.escape(text)}{tip}</text>")

    def glyph(self, x: float, y: float, glyph: str, color: str, title: str, size: int = 12) -> None:
        """A marker (● ✕ ○ ▲ ▼ ◆) centred on ``(x, y)``, ``title`` as its tooltip."""
        self.text(self.x(x), self.y(y) + size * 0.35, glyph, color, size, "middle", True, title)

    def band(self, xs: tuple[float, float], ys: tuple[float, float], color: str, op: float) -> None:
        """The rectangle ``xs`` by ``ys`` at opacity ``op``, clipped to the x range."""
        left, right = self.x(max(xs[0], self.x0)), self.x(min(xs[1], self.x1))
        top, bottom = self.y(ys[1]), self.y(ys[0])
        self.parts.append(f'<rect x="{left:.1f}" y="{top:.1f}" width="{max(0.5, right - left):.1f}"'
                          f' height="{bottom - top:.1f}" fill="{color}" opacity="{op}"/>')

    def line(self, points: Iterable[tuple[float, float]], color: str, dash: str = "none",
             width: float = 1.5) -> None:
        path = " ".join(f"{self.x(x):.1f},{self.y(y):.1f}" for x, y in points)
        self.parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" '
                          f'stroke-width="{width}" stroke-dasharray="{dash}"/>')

    def vline(self, x: float, color: str, label: str = "", dash: str = "none",
              py: float = 10) -> None:
        """A line across the plot at ``x`` (if in range), labelled at pixel row ``py``."""
        if self.x0 <= x <= self.x1:
            near_edge = self.x(x) > self.width - self.right - 100  # label on the left side
            self.line([(x, self.y0), (x, self.y1)], color, dash)
            self.text(self.x(x) + (-3 if near_edge else 3), py, label, color,
                      anchor="end" if near_edge else "start", bold=True)

    def axes(self, x_label: str, y_label: str = "") -> None:
        """Ticks and labels along the bottom, and along the left if ``y_label``."""
        base = self.height - self.bottom
        self.line([(self.x0, self.y0), (self.x1, self.y0)], "#888", width=1)
        for tick in ticks(self.x0, self.x1):
            self.text(self.x(tick), base + 15, f"{tick:g}", "#555", 10, "middle")
        self.text(self.width - self.right, base + 28, x_label, "#555", anchor="end")
        for tick in ticks(self.y0, self.y1) if y_label else []:
            self.line([(self.x0, tick), (self.x1, tick)], "#eee", width=1)
            self.text(self.left - 7, self.y(tick) + 3, f"{tick:g}", "#555", 10, "end")
        self.text(12, self.top - 8, y_label, "#555")

    def render(self, legend: Iterable[tuple[str, str]] = ()) -> str:
        """The SVG (shrinking with a narrow output) over the ``(color, text)`` legend."""
        keys = " &nbsp; ".join(f'<b style="color:{c}">{html.escape(t)}</b>' for c, t in legend)
        return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {self.width} '
                f'{self.height}" style="font-family:sans-serif;background:#fff;width:100%;'
                f'max-width:{self.width}px">{"".join(self.parts)}</svg>'
                f'<div style="font:12px sans-serif">{keys}</div>')


def ticks(low: float, high: float) -> list[float]:
    """Round values from ``low`` to ``high``, at most about ten of them."""
    step = next((s for s in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
                 if (high - low) / s <= 10), high - low or 1)
    return [i * step for i in range(math.ceil(low / step), math.floor(high / step) + 1)]
