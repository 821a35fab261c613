"""The web portal (CN101662474A, claims 1, 3-7, 9, 10): accounts, play tokens, reverse
bookmarks and the bookmark page. :mod:`.app` is the JSON API with the reverse interface,
:mod:`.pages` the pages, :mod:`.store` the database, :mod:`.service` the server."""

from rtsp_resume.portal.app import ResultCode
from rtsp_resume.portal.passwords import Kdf
from rtsp_resume.portal.service import PortalServer, read_users_file
from rtsp_resume.portal.store import Store

__all__ = ["Kdf", "PortalServer", "ResultCode", "Store", "read_users_file"]
