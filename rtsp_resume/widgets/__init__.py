"""Live dashboards for the notebooks: the patent's story with widgets you can press.
``stage`` runs the servers in the kernel; ``terminal`` is a viewer's phone, shown by
``views`` with ``display``'s helpers; ``token_lab`` and ``dashboards`` are the notebooks'
dashboards. Each module imports only those before it in this list, read backwards. Widgets
change from background threads: buttons stay live while a video plays."""

from rtsp_resume.widgets.dashboards import (
    HeartbeatLab,
    HeartbeatSummary,
    PositionPlot,
    SystemPanel,
    Tour,
)
from rtsp_resume.widgets.stage import Stage, running, sample_media, stop_all
from rtsp_resume.widgets.terminal import Episode, Terminal
from rtsp_resume.widgets.token_lab import ProbeTable, TokenLab, decode_token, tamper
from rtsp_resume.widgets.views import ResumeCheck, heartbeat_outcomes

__all__ = [
    "Episode", "HeartbeatLab", "HeartbeatSummary", "PositionPlot", "ProbeTable", "ResumeCheck",
    "Stage", "SystemPanel", "Terminal", "TokenLab", "Tour", "decode_token", "heartbeat_outcomes",
    "running", "sample_media", "stop_all", "tamper",
]
