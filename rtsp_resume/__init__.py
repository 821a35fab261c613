"""rtsp-resume: a reference implementation of patent CN101662474A.

A mobile player's RTSP stream breaks; the streaming server notices by heartbeat
(claims 2, 8), records a *reverse bookmark* (user, content, play position) on the web
portal (claims 1, 3, 5, 6, 7, 9) and the viewer later logs in, picks the bookmark and
resumes where they were (claims 1, 3, 4, 9, 10).

The modules, from the bottom up (see docs/architecture.md):

- sans-I/O core: :mod:`rtsp_resume.rtsp`, :mod:`rtsp_resume.rtp`, :mod:`rtsp_resume.sdp`,
  :mod:`rtsp_resume.heartbeat`, :mod:`rtsp_resume.position`, :mod:`rtsp_resume.tokens`
- media: :mod:`rtsp_resume.media` (PyAV reader), :mod:`rtsp_resume.sample`
- the three parties: :mod:`rtsp_resume.server`, :mod:`rtsp_resume.portal`,
  :mod:`rtsp_resume.client`
- entry points: :mod:`rtsp_resume.cli`, :mod:`rtsp_resume.widgets`, :mod:`rtsp_resume.demo`
"""

__version__ = "0.1.0"
