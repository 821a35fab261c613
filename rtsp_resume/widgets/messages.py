"""The messages between the parties, shown as tables of their fields.

:class:`FieldsView` shows one message (BookMarkReq, BookMarkResp, the request for the
bookmark interface and its answer) field by field, with what each field means: the
``*_MEANINGS`` tables, in the words of the patent's embodiment.
"""

from __future__ import annotations

import html
import json
from typing import Any

import ipywidgets as w

from rtsp_resume.widgets.display import _CSS, Shown, _compact, _table, shorten

REQ_MEANINGS = {
    "EncryptToken": "the play token the portal signed when play began",
    "UserToken": "the viewer's login session (temporary login token)",
    "ContentID": "program number",
    "ContentBM": "program play time point (seconds)",
    "UserID": "who was watching (claim 5)",
}
INTERFACE_REQUEST_MEANINGS = {
    "EncryptToken": "the play token stored with the bookmark",
    "UserToken": "the terminal's current login (temporary login token)",
    "ContentID": "the program of the chosen bookmark",
    "ContentBM": "the bookmark's time point (seconds)",
}
INTERFACE_MEANINGS = {
    "ContentID": "the program",
    "EncryptToken": "a fresh play token; it names the start position",
    "url": "the bookmark interface: the RTSP URL to call",
    "ContentBM": "where playing starts (seconds)",
    "expires_in": "seconds the play token stays valid",
}
RESP_MEANINGS = {
    "UserID": "whose bookmark (claim 6)",
    "UserToken": "holds the UserID (embodiment, step 3)",
    "ResultCode": "0: bookmark added; anything else: failure",
    "Result": "the code's name",
    "ResultDesc": "what happened, in words",
    "Current": "whether it is now the user's bookmark for the program (newer ones win)",
}


class FieldsView(Shown):
    """A message shown as a table of its fields: name, value, what the field means."""

    _shown = "html"

    def __init__(self, title: str, meanings: dict[str, str] | None = None) -> None:
        self.title = title
        self.meanings = meanings or {}
        self.fields: dict[str, Any] | None = None
        self.html = w.HTML(self._render())
        self.html.add_class("rr-fields")

    def show(self, fields: dict[str, Any]) -> None:
        self.fields = dict(fields)
        self.html.value = self._render()

    def _render(self) -> str:
        caption = _compact(f"<b>{html.escape(self.title)}</b>")
        if self.fields is None:
            return _CSS + caption + "<br><i>nothing yet</i>"
        rows = []
        for name, value in self.fields.items():
            full = value if isinstance(value, str) else json.dumps(value)
            rows.append((f"<code>{html.escape(name)}</code>",
                         f'<code title="{html.escape(full)}">{html.escape(shorten(value))}</code>',
                         html.escape(self.meanings.get(name, ""))))
        return _CSS + caption + _table(rows, ("field", "value", "meaning"))
