"""Train a Ghost-YOLO detector: python tools/train.py model=ghost_yolo (= ghostdet train ...). The tool is ghostdet/cli/train.py."""
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])  # a checkout runs its own ghostdet, installed or not
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from ghostdet.cli.train import main  # noqa: E402

if __name__ == "__main__":
    main()
