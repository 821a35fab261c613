"""``python -m rtsp_resume``: see :mod:`rtsp_resume.cli`."""

from rtsp_resume.cli import main

raise SystemExit(main())
