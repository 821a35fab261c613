"""The web portal: accounts, play tokens, reverse bookmarks and the bookmark page.

The patent's portal server (CN101662474A, claims 1, 3-7, 9, 10): the viewer logs in here,
starts programs, and comes back to resume them; the streaming server deposits a bookmark
here through the *reverse bookmark-set interface* when a viewer's link breaks.

Modules:

- :mod:`~rtsp_resume.portal.app`: the routes (JSON API under ``/api/`` and the pages), the
  checks on every input, the BookMarkResp ResultCodes.
- :mod:`~rtsp_resume.portal.store`: SQLite (WAL, ``synchronous=FULL``), group commit,
  the "newer bookmark wins" rule, password hashing.
- :mod:`~rtsp_resume.portal.catalogue`: the programs, read from the media folder.
- :mod:`~rtsp_resume.portal.httpd`: a threaded keep-alive WSGI server.
- :mod:`~rtsp_resume.portal.service`: :class:`PortalServer` and the CLI's :func:`main`.
- ``openapi.yaml`` describes the API; ``views/`` and ``static/`` hold the pages.

How the patent's tokens are read here. **UserToken** is the temporary login token: a random
bearer secret issued at each login, stored only as a hash next to a random *login session
id*. **EncryptToken** is the play token (:mod:`rtsp_resume.tokens`): signed, naming the
user, the content and that login session id. The streaming server, which must never hold
the viewer's bearer secret, fills BookMarkReq.UserToken with the login session id taken
from the play token. "Matches what the portal stored" (claims 4, 10) therefore means: the
EncryptToken is the one stored with the bookmark, and the UserToken the terminal presents
is a currently valid login of the same user (each login issues a new UserToken).
"""

from rtsp_resume.portal.app import ResultCode, create_app
from rtsp_resume.portal.catalogue import Catalogue
from rtsp_resume.portal.service import PortalServer, main, read_users_file
from rtsp_resume.portal.store import Kdf, Store

__all__ = [
    "Catalogue",
    "Kdf",
    "PortalServer",
    "ResultCode",
    "Store",
    "create_app",
    "main",
    "read_users_file",
]
