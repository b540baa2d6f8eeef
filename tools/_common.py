"""What every tool shares: console logging and the one-line error exit (no tracebacks for user errors)."""
from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

# tools run from a checkout: make `import ghostdet` work even without `pip install -e .`
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ghostdet.utils.errors import GhostdetError  # noqa: E402


def setup_logging(verbose: bool = False) -> None:
    """Console logging for a tool: plain messages on stderr.

    Only our own console handler is replaced (the tool configs set ``hydra/job_logging: none``), so handlers
    that others installed on the root logger, such as pytest's log capture, stay in place.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "ghostdet_console", False):
            root.removeHandler(handler)
    console = logging.StreamHandler(sys.stderr)
    console.ghostdet_console = True
    console.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(console)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def run_tool(main):
    """Wrap a tool's main: a GhostdetError (bad input, bad file, bad config) becomes ``error: <msg>`` and exit 1."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except GhostdetError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper
