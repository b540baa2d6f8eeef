"""Check a dataset: python tools/check_data.py data=coco128 (= ghostdet check-data ...). The tool is ghostdet/cli/check_data.py."""
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])  # a checkout runs its own ghostdet, installed or not
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from ghostdet.cli.check_data import main  # noqa: E402

if __name__ == "__main__":
    main()
