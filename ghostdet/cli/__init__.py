"""The ``ghostdet`` command: ``ghostdet <command> [arguments]``, each command taking exactly the arguments of its tool
script (``ghostdet train model=ghost_yolo`` = ``python tools/train.py model=ghost_yolo``).

The top layer of the package: the tools live here (they parse, call the library and print); nothing else in ghostdet
imports ghostdet.cli. ``tools/*.py`` are a few lines each that call these modules' ``main``.
"""
from __future__ import annotations

import importlib
import sys

# command -> (module of ghostdet.cli, what it does); the module's main() reads its arguments from sys.argv
COMMANDS = {
    "train": ("train", "train a detector (Hydra overrides: model=ghost_yolo data=coco128 epochs=50 ...)"),
    "eval": ("eval", "COCO mAP of a checkpoint or an export (weights=best.pt|best.onnx|best_openvino/ [data=...])"),
    "detect": ("detect", "detect objects in images, folders, globs, videos, webcams (SOURCE... --weights best.pt)"),
    "export": ("export", "export a checkpoint to ONNX, OpenVINO or TorchScript and check it (--weights best.pt)"),
    "benchmark": ("benchmark", "params, GFLOPs, latency and mAP of models (models=[ghost_yolo,...])"),
    "check-data": ("check_data", "scan a dataset and render samples (data=yolo data.root=DIR)"),
}
ALIASES = {"val": "eval", "predict": "detect"}  # the names ultralytics users type


def usage() -> str:
    from ghostdet import __version__

    width = max(map(len, COMMANDS))
    lines = [f"usage: ghostdet <command> [arguments]   (ghostdet {__version__})", "",
             "Each command takes the arguments of its tool script (ghostdet train ... = python tools/train.py ...);",
             "ghostdet <command> --help shows them.", "", "commands:"]
    lines += [f"  {name:<{width}}  {what}" for name, (_module, what) in COMMANDS.items()]
    lines += ["", "aliases: " + ", ".join(f"{alias} = {name}" for alias, name in ALIASES.items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``ghostdet <command> [arguments]``: run the command's tool with ``sys.argv`` set as if it were the script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from ghostdet import __version__

        print(f"ghostdet {__version__}")
        return 0
    name, args = argv[0], argv[1:]
    name = ALIASES.get(name, name)
    command = COMMANDS.get(name) or COMMANDS.get(name.replace("_", "-"))  # check_data, like the script, works too
    if command is None:
        choices = ", ".join([*COMMANDS, *ALIASES])
        print(f"error: unknown command {name!r}; choose from {choices} (ghostdet --help)", file=sys.stderr)
        return 2
    module = importlib.import_module(f"ghostdet.cli.{command[0]}")
    sys.argv = [f"ghostdet {name}", *args]  # Hydra and argparse read sys.argv; the usage lines say `ghostdet <name>`
    result = module.main()
    return result if isinstance(result, int) else 0
