"""Ctrl-C during training: the first SIGINT only asks the trainer to stop at its next optimizer step, where the
state is consistent and can be saved for an exact resume; the default handler is back for a second one (stop at
once). The DataLoader workers ignore SIGINT (``ghostdet/data/loader.py``), so they finish the batches still needed.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import threading

log = logging.getLogger(__name__)


class StopRequest:
    """``requested`` turns true on the first Ctrl-C while :meth:`on_sigint` is active (in the main thread; in
    another thread Ctrl-C keeps raising KeyboardInterrupt). ``saved``: the trainer saved its state on stopping."""

    def __init__(self):
        self.requested = False
        self.saved = False

    @contextlib.contextmanager
    def on_sigint(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.getsignal(signal.SIGINT)

        def request(signum, frame):
            self.requested = True
            signal.signal(signal.SIGINT, previous)
            log.warning("Ctrl-C: stopping at the next optimizer step and saving (Ctrl-C again to stop at once)")

        signal.signal(signal.SIGINT, request)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


__all__ = ["StopRequest"]
