"""Live dashboards for the notebooks: the patent's story with widgets you can press.

``stage`` runs the servers in the kernel; ``terminal`` is a viewer's phone, shown by
``views`` and ``timeline`` (heartbeats) with ``display``'s helpers; ``heartbeat_lab``,
``token_lab`` and ``dashboards`` (tour, system panel, position plot) are the notebooks'
dashboards. Each module imports only those before it in this list, read backwards.
Widgets change from background threads, so buttons stay live while a video plays.
"""

from rtsp_resume.widgets.dashboards import PositionPlot, SystemPanel, Tour
from rtsp_resume.widgets.display import EventLog, FieldsView, picture, shorten
from rtsp_resume.widgets.heartbeat_lab import HeartbeatLab, HeartbeatSummary
from rtsp_resume.widgets.stage import REFRESH, Stage, running, sample_media, stop_all
from rtsp_resume.widgets.terminal import Episode, Terminal
from rtsp_resume.widgets.timeline import HeartbeatOutcome, HeartbeatTimeline, heartbeat_outcomes
from rtsp_resume.widgets.token_lab import ProbeTable, TokenLab, decode_token, tamper
from rtsp_resume.widgets.views import BookmarkTable, ComparisonView, LinkToggle, ResumeCheck

__all__ = [
    "REFRESH", "BookmarkTable", "ComparisonView", "Episode", "EventLog", "FieldsView",
    "HeartbeatLab", "HeartbeatOutcome", "HeartbeatSummary", "HeartbeatTimeline", "LinkToggle",
    "PositionPlot", "ProbeTable", "ResumeCheck", "Stage", "SystemPanel", "Terminal",
    "TokenLab", "Tour", "decode_token", "heartbeat_outcomes", "picture", "running",
    "sample_media", "shorten", "stop_all", "tamper",
]
