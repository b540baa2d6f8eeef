"""Detect objects: python tools/detect.py photo.jpg [--weights best.pt] (= ghostdet detect ...). The tool is ghostdet/cli/detect.py."""
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])  # a checkout runs its own ghostdet, installed or not
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from ghostdet.cli.detect import main  # noqa: E402

if __name__ == "__main__":
    main()
