"""The web portal (CN101662474A, claims 1, 3-7, 9, 10): accounts, play tokens, reverse
bookmarks and the bookmark page.

The viewer signs in here, starts programs and comes back to resume them; the streaming
server deposits a bookmark here through the reverse bookmark-set interface when a viewer's
link breaks. :mod:`.app` holds the JSON API and its ResultCodes (how the patent's UserToken
and EncryptToken are read is told there), :mod:`.pages` the pages, :mod:`.checks` the input
checks, :mod:`.store` the database and the bookmark rules, :mod:`.passwords` the password
hashes, :mod:`.catalogue` the programs, :mod:`.service` the server (:class:`PortalServer`).
"""

from rtsp_resume.portal.app import ResultCode, create_app
from rtsp_resume.portal.catalogue import Catalogue
from rtsp_resume.portal.passwords import Kdf
from rtsp_resume.portal.service import PortalServer, main, read_users_file
from rtsp_resume.portal.store import Store

__all__ = ["Catalogue", "Kdf", "PortalServer", "ResultCode", "Store", "create_app", "main",
           "read_users_file"]
