"""For tools/detect.py, export.py and benchmark.py until they move into ghostdet/cli/ like the others: the shared tool
helpers live in ghostdet/cli/common.py (re-exported here, not copied)."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # a checkout runs its own ghostdet, installed or not
    sys.path.insert(0, str(ROOT))

from ghostdet.cli.common import add_plugins_argument, check_checkpoints_before_hydra, run_tool, setup_logging  # noqa: E402,F401
