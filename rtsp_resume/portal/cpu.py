"""Keeping the portal's threads on one CPU.

The portal runs Python in many threads (one per connection, plus the store's writer), and
only the holder of the GIL runs. When those threads sit on different CPUs, every hand-over
of the GIL wakes a thread on another CPU, which often finds the GIL taken again and sleeps:
under load, measured with ``benchmarks/portal_load.py``, the kernel's thread switching
cost more than the requests themselves. On one CPU a hand-over is a plain switch, and
the other CPUs are left to everything else (the streaming server, SQLite's fsync waits in
other processes, the clients). Linux only; elsewhere this does nothing.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)


def pick_cpu() -> int | None:
    """A CPU for the portal's threads: the highest one this process may use, or None
    when there is no choice to make (a single CPU, or no affinity control here)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    allowed = os.sched_getaffinity(0)
    return max(allowed) if len(allowed) > 1 else None


def pin_current_thread(cpu: int | None) -> None:
    """Run the calling thread on ``cpu`` only (nothing if ``cpu`` is None)."""
    if cpu is None:
        return
    try:
        os.sched_setaffinity(threading.get_native_id(), {cpu})
    except OSError as exc:  # the CPU went away, or a container forbids it: run anywhere
        log.debug("portal: cannot keep a thread on CPU %d: %s", cpu, exc)
