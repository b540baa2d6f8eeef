"""What every tool shares: the configs' location, console logging and the one-line error exit (no tracebacks for
user errors)."""
from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

from ghostdet.utils.errors import ConfigError, GhostdetError


def config_dir() -> Path:
    """The folder of the Hydra configs (train.yaml, model/, data/, ...).

    Installed (a wheel, or ``pip install -e .``): the package ``ghostdet.configs``, which is the project's top-level
    ``configs/`` shipped under that name (pyproject.toml). A source checkout that is not installed (``python
    tools/train.py`` with the checkout put on ``sys.path`` by the tool script): the ``configs/`` next to the package.
    """
    from importlib.resources import files

    try:
        return Path(str(files("ghostdet.configs")))
    except ModuleNotFoundError:
        import ghostdet

        path = Path(ghostdet.__file__).resolve().parents[1] / "configs"
        if not path.is_dir():
            raise ConfigError(f"no ghostdet configs: neither the package ghostdet.configs nor {path}; "
                              "reinstall ghostdet (pip install ghostdet, or pip install -e . in a checkout)") from None
        return path


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


def start_tool(plugins=None, verbose: bool = False) -> None:
    """Every tool's first step: the console, then the user's plugin modules (their models registered before
    anything is built)."""
    from ghostdet.models import import_plugins

    setup_logging(verbose)
    import_plugins(plugins)


def check_checkpoints_before_hydra(keys, argv=None) -> None:
    """Refuse a hostile or broken checkpoint named by ``key=PATH`` on the command line *before* Hydra creates the
    run dir, so a file that is refused leaves nothing behind (one line, exit 1).

    Only the file's structure is checked here (a plain-data checkpoint whose model spec names registered ghostdet
    models); the tool still builds the model through the registry, which catches the rest.
    """
    argv = sys.argv[1:] if argv is None else argv
    paths, plugins = [], []
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        items = [item.strip().strip("'\"") for item in value.strip("[]").split(",")] if sep else []
        if key == "plugins":  # the user's own modules, from the command line
            plugins += [item for item in items if item]
        elif key in keys:
            paths += [item for item in items if item.endswith((".pt", ".pth"))]
    if not paths:
        return

    @run_tool
    def check() -> None:
        from ghostdet.models import import_plugins
        from ghostdet.utils.checkpoint import load_checkpoint, model_spec_of

        import_plugins(plugins)
        for path in paths:
            model_spec_of(load_checkpoint(path), path)

    check()


def add_plugins_argument(parser) -> None:
    """``--plugins my_pkg.backbones``: the user's modules that register models (imported before the model is built)."""
    parser.add_argument("--plugins", action="append", default=[], metavar="MODULE",
                        help="import this module first (it registers your own models with ghostdet.models."
                             "register_backbone/...); repeatable")


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
