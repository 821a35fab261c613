"""rtsp-resume: a reference implementation of patent CN101662474A.

A mobile player's RTSP stream breaks; the streaming server notices by heartbeat
(claims 2, 8), records a *reverse bookmark* (user, content, play position) on the web
portal (claims 1, 3, 5, 6, 7, 9) and the viewer later logs in, picks the bookmark and
resumes where they were (claims 1, 3, 4, 9, 10). docs/architecture.md maps the modules:
the sans-I/O core (rtsp, rtp, sdp, heartbeat, position, tokens) and the media reader at
the bottom, the three parties (server, portal, client) on it, entry points on top.
"""

__version__ = "0.1.0"
