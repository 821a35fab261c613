"""Live dashboards for the notebooks: the patent's story with widgets you can press.

A notebook cell reads like the step it performs::

    tour = Tour()                      # streaming server + portal + outbox, in the kernel
    tour.login(); tour.play()          # the viewer plays through a link that can be cut
    tour.link.toggle.value = True      # what pressing "Cut the link" does
    tour.wait_for_bookmark(timeout=10) # heartbeat misses -> BookMarkReq -> BookMarkResp
    tour.resume_button.click()         # log in again, bookmark interface, resume
    tour.wait_for_resume(timeout=10)   # first frame after resume vs last before the cut

Modules, each depending only on those before it: ``display`` (pictures, tables, the
log, a message as its fields) and ``chart`` (an SVG canvas); ``stage`` (the servers in
the kernel, their events, a thread for the views); ``timeline``, ``episode`` and ``views``
(what a terminal shows); ``terminal`` (a viewer's phone); then the dashboards:
``heartbeat_lab``, ``token_lab`` (with the probes) and ``dashboards`` (the tour, the
system panel, the position plot). Widgets change from background threads, never by
blocking the kernel, so buttons stay responsive while a video plays.
"""

from rtsp_resume.widgets.dashboards import PositionPlot, SystemPanel, Tour
from rtsp_resume.widgets.display import PICTURE_WIDTH, EventLog, FieldsView, picture, shorten
from rtsp_resume.widgets.heartbeat_lab import HeartbeatLab, HeartbeatSummary
from rtsp_resume.widgets.stage import REFRESH, Stage, running, sample_media, stop_all
from rtsp_resume.widgets.terminal import Episode, Terminal
from rtsp_resume.widgets.timeline import (
    HeartbeatOutcome,
    HeartbeatTimeline,
    SessionTrace,
    heartbeat_outcomes,
)
from rtsp_resume.widgets.token_lab import ProbeTable, TokenLab, decode_token, tamper
from rtsp_resume.widgets.views import (
    BookmarkTable,
    ComparisonView,
    LinkToggle,
    PlayerView,
    ResumeCheck,
)

__all__ = [
    "PICTURE_WIDTH", "REFRESH", "BookmarkTable", "ComparisonView", "Episode", "EventLog",
    "FieldsView", "HeartbeatLab", "HeartbeatOutcome", "HeartbeatSummary", "HeartbeatTimeline",
    "LinkToggle", "PlayerView", "PositionPlot", "ProbeTable", "ResumeCheck",
    "SessionTrace", "Stage", "SystemPanel", "Terminal", "TokenLab", "Tour", "decode_token",
    "heartbeat_outcomes", "picture", "running", "sample_media", "shorten", "stop_all",
    "tamper",
]
