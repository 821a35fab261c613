"""Live dashboards for the notebooks: the patent's story with widgets you can press.

The notebooks in ``notebooks/`` hold the explanation and the calls; everything that runs
lives in this package, so a notebook cell reads like the step it performs::

    tour = Tour()                      # streaming server + portal + outbox, in the kernel
    tour.login()                       # the viewer logs in to the portal
    tour.play()                        # plays through a link that can be cut
    tour.link.toggle.value = True      # what pressing "Cut the link" does
    tour.wait_for_bookmark(timeout=10) # heartbeat misses -> BookMarkReq -> BookMarkResp
    tour.resume_button.click()         # log in again, bookmark interface, resume
    tour.wait_for_resume(timeout=10)   # first frame after resume vs last before the cut

The modules, from the bottom up (every public name is importable from here):

- ``display``: pictures, HTML tables, :class:`EventLog` (the log every dashboard shows).
- ``messages``: :class:`FieldsView`, a protocol message as a table of its fields.
- ``stage``: :class:`Stage`, a :class:`~rtsp_resume.together.System` (streaming server,
  portal and the bookmark outbox between them) on background threads, plus the event
  fan-out that the widgets listen to, a log, and wait helpers with deadlines; the
  registry (:func:`running`, :func:`stop_all`) and :func:`sample_media`.
- ``terminal``: :class:`Terminal`, one viewer's phone: a
  :class:`~rtsp_resume.linkcut.LinkCutter` (its radio link), a
  :class:`~rtsp_resume.client.PortalClient` and the :class:`~rtsp_resume.player.Player`.
  It owns the views below. ``episode``: :class:`Episode` (one interruption and what
  followed) and :class:`ResumeCheck` (last frame before against first frame after).
- ``views``: :class:`PlayerView`, :class:`LinkToggle`, :class:`BookmarkTable` (with the
  bookmark buttons that resume) and :class:`ComparisonView`.
- ``chart`` (an SVG canvas) and ``timeline``: :class:`HeartbeatTimeline`.
- Dashboards for the notebooks: ``tour`` (:class:`Tour`), ``heartbeat_lab``
  (:class:`HeartbeatLab`), ``token_lab`` (:class:`TokenLab`), ``system_panel``
  (:class:`SystemPanel`), ``position_plot`` (:class:`PositionPlot`) and ``probes``
  (:class:`ProbeTable`).

Threads. Widgets are updated from background threads (a 10 Hz ticker for pictures,
counters and plots; the server's, the outbox's and a worker thread for events), never
by blocking the kernel, so buttons stay responsive while a video plays. Thread output
goes to an ``Output`` widget (:class:`EventLog`), never to ``print``.

Clean-up. Every :class:`Stage` is kept in a module registry under a key ("stage" by
default): creating a new one stops the previous one with the same key, so re-running a
cell never leaves old servers driving old widgets. :func:`stop_all` runs at interpreter
exit (kernel shutdown) and every notebook calls ``stop()`` in its last cell.

Plots are drawn as SVG in ``ipywidgets.HTML``: no plotting library needed.
"""

from rtsp_resume.client import PortalError
from rtsp_resume.widgets.display import (
    PICTURE_WIDTH,
    PLOT_REFRESH,
    EventLog,
    clock,
    describe_frame,
    picture,
    shorten,
)
from rtsp_resume.widgets.episode import Episode, ResumeCheck
from rtsp_resume.widgets.heartbeat_lab import HeartbeatLab, HeartbeatSummary
from rtsp_resume.widgets.messages import (
    INTERFACE_MEANINGS,
    INTERFACE_REQUEST_MEANINGS,
    REQ_MEANINGS,
    RESP_MEANINGS,
    FieldsView,
)
from rtsp_resume.widgets.position_plot import PositionPlot
from rtsp_resume.widgets.probes import Probe, ProbeTable, post_json
from rtsp_resume.widgets.stage import REFRESH, Stage, running, sample_media, stop_all
from rtsp_resume.widgets.system_panel import SystemPanel
from rtsp_resume.widgets.terminal import Terminal
from rtsp_resume.widgets.timeline import (
    HeartbeatOutcome,
    HeartbeatTimeline,
    SessionTrace,
    heartbeat_outcomes,
)
from rtsp_resume.widgets.token_lab import TokenLab, decode_token, tamper
from rtsp_resume.widgets.tour import Tour
from rtsp_resume.widgets.views import BookmarkTable, ComparisonView, LinkToggle, PlayerView

__all__ = [
    "INTERFACE_MEANINGS",
    "INTERFACE_REQUEST_MEANINGS",
    "PICTURE_WIDTH",
    "PLOT_REFRESH",
    "REFRESH",
    "REQ_MEANINGS",
    "RESP_MEANINGS",
    "BookmarkTable",
    "ComparisonView",
    "Episode",
    "EventLog",
    "FieldsView",
    "HeartbeatLab",
    "HeartbeatOutcome",
    "HeartbeatSummary",
    "HeartbeatTimeline",
    "LinkToggle",
    "PlayerView",
    "PortalError",
    "PositionPlot",
    "Probe",
    "ProbeTable",
    "ResumeCheck",
    "SessionTrace",
    "Stage",
    "SystemPanel",
    "Terminal",
    "TokenLab",
    "Tour",
    "clock",
    "decode_token",
    "describe_frame",
    "heartbeat_outcomes",
    "picture",
    "post_json",
    "running",
    "sample_media",
    "shorten",
    "stop_all",
    "tamper",
]
