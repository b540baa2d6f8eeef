"""Export a checkpoint: python tools/export.py --weights best.pt [--format onnx] (= ghostdet export ...). The tool is ghostdet/cli/export.py."""
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])  # a checkout runs its own ghostdet, installed or not
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from ghostdet.cli.export import main  # noqa: E402

if __name__ == "__main__":
    main()
