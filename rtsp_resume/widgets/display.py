"""How the widgets show things: pictures, HTML tables, numbers as text, a live log.

Small pieces every view and dashboard of the package uses; none of them knows about the
servers. Plots have their own canvas in :mod:`rtsp_resume.widgets.chart`.
"""

from __future__ import annotations

import html
import json
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import av
import ipywidgets as w
import numpy as np

from rtsp_resume.player import ShownFrame, encode_jpeg

PLOT_REFRESH = 0.25  # seconds between redraws of a live plot
PICTURE_WIDTH = 320  # pixels of the pictures sent to the browser (the clip is 640x360)


class Shown:
    """Shown in a notebook cell as one of its ipywidgets: the attribute named by
    ``_shown`` (``widget`` unless the class names another one)."""

    _shown = "widget"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return getattr(self, self._shown)._repr_mimebundle_(**kwargs)


def clock(seconds: float) -> str:
    """``83.25`` -> ``"1:23.2"`` (how the portal's bookmark button names a position)."""
    minutes, rest = divmod(max(0.0, seconds), 60)
    return f"{int(minutes)}:{rest:04.1f}"


def shorten(value: Any, keep: int = 10) -> str:
    """Long tokens as ``abcdefghij…wxyz`` (in a URL, only its token); the rest as text."""
    text = value if isinstance(value, str) else json.dumps(value)
    base, sep, token = text.partition("?token=")
    if sep:
        return base + sep + shorten(token, keep)
    return text if len(text) <= 2 * keep + 6 else f"{text[:keep]}…{text[-4:]}"


def describe_frame(frame: ShownFrame | None) -> str:
    if frame is None:
        return "none"
    number = f"frame {frame.index}" if frame.index is not None else "a frame"
    return f"{number} (npt {frame.pts:.2f} s)"


def picture(frame: ShownFrame | None, width: int = PICTURE_WIDTH) -> bytes:
    """A shown frame as a small JPEG for ``ipywidgets.Image`` (a grey one for None)."""
    if frame is None or frame.image is None:
        return _placeholder(width)
    image = frame.image
    height = max(2, round(image.height * width / image.width / 2) * 2)
    return encode_jpeg(image.reformat(width=width, height=height))


_placeholders: dict[int, bytes] = {}


def _placeholder(width: int) -> bytes:
    if width not in _placeholders:
        grey = np.full((width * 9 // 16 // 2 * 2, width, 3), 48, dtype=np.uint8)
        _placeholders[width] = encode_jpeg(av.VideoFrame.from_ndarray(grey, format="rgb24"))
    return _placeholders[width]


def _table(rows: Iterable[Sequence[Any]], header: Sequence[str], css: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
                   for row in rows)
    return (f'<table class="rr-table {css}" style="border-collapse:collapse;font-size:12px;'
            f'line-height:1.35">'
            f"<tr>{head}</tr>{body}</table>")


def _compact(text: str) -> str:
    """HTML widgets inherit a 28 px line height in JupyterLab: too airy for a dashboard."""
    return f'<div style="line-height:1.4">{text}</div>'


_CSS = """<style>
.rr-table td, .rr-table th {border:1px solid #ddd; padding:2px 6px; text-align:left;
  vertical-align:top}
.rr-table th {background:#f3f3f3}
.rr-ok {color:#1a7f37; font-weight:bold}
.rr-bad {color:#c62828; font-weight:bold}
</style>"""


class EventLog(Shown):
    """A timestamped log written from any thread into an ``Output`` widget."""

    _shown = "output"

    def __init__(self, t0: float | None = None, height: str = "220px") -> None:
        self.t0 = time.time() if t0 is None else t0
        self.output = w.Output(layout=w.Layout(max_height=height, overflow="auto",
                                               border="1px solid #ddd", width="100%"))
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def say(self, text: str, at: float | None = None) -> None:
        stamp = (time.time() if at is None else at) - self.t0
        line = f"[{stamp:6.2f} s] {text}"
        with self._lock:
            self.lines.append(line)
            self.output.append_stdout(line + "\n")
