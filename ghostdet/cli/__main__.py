"""``python -m ghostdet.cli <command> ...``: the ``ghostdet`` command without its console script."""
import sys

from ghostdet.cli import main

sys.exit(main())
