"""What every tool shares: the configs' location, console logging and the one-line error exit (no tracebacks for
user errors)."""
from __future__ import annotations

import contextlib
import functools
import logging
import sys
from pathlib import Path

from ghostdet.utils.atomic import missing_folders
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


# ------------------------------------------------------------------ before Hydra: keys and the run dir
_HYDRA_FLAGS_THAT_CHANGE_THE_CONFIG = ("-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir")
_HYDRA_FLAGS_WITH_A_VALUE = ("-c", "--cfg", "-p", "--package", "-i", "--info", "-sc", "--shell-completion",
                             "--experimental-rerun", *_HYDRA_FLAGS_THAT_CHANGE_THE_CONFIG)


def config_keys(config_name: str) -> set[str]:
    """The top-level keys of ``configs/<config_name>.yaml``: its own keys, its config groups, and ``hydra``."""
    import yaml

    raw = yaml.safe_load((config_dir() / f"{config_name}.yaml").read_text(encoding="utf-8")) or {}
    keys = {str(k) for k in raw if k != "defaults"} | {"hydra"}
    for entry in raw.get("defaults") or []:
        if isinstance(entry, dict):
            for group in entry:
                group = str(group).removeprefix("optional ").strip()
                if not group.startswith("override "):
                    keys.add(group.split("/")[0].split("@")[0])
    return keys


def unknown_key_message(key: str, keys: set[str], config_name: str) -> str:
    import difflib

    real = sorted(keys - {"hydra"})
    close = difflib.get_close_matches(key, real, n=1, cutoff=0.6)
    if not close:  # conf_thres -> conf, max_dets -> max_det: same first word
        same_word = [k for k in real if k.split("_")[0] == key.split("_")[0]]
        close = sorted(same_word, key=lambda k: -difflib.SequenceMatcher(None, key, k).ratio())[:1]
    hint = f"did you mean {close[0]}?" if close else f"the keys are: {', '.join(real)}"
    return f"unknown key {key!r}: {config_name}.yaml has no such setting and nothing would read it; {hint}"


def refuse_unknown_keys(config_name: str, argv=None) -> None:
    """Refuse, before Hydra runs, a ``key=value`` (also ``+key=``, ``++key=``, ``~key``) whose top-level key the tool's
    config does not have: Hydra would say "use +epoch=3", and then nothing reads ``epoch`` (one line, exit 1)."""
    argv = sys.argv[1:] if argv is None else argv
    if any(arg.split("=")[0] in _HYDRA_FLAGS_THAT_CHANGE_THE_CONFIG for arg in argv):
        return  # another primary config: its keys are not ours to judge

    @run_tool
    def check() -> None:
        keys = config_keys(config_name)
        after_flag = False
        for arg in argv:
            flag_value, after_flag = after_flag, arg in _HYDRA_FLAGS_WITH_A_VALUE
            if arg.startswith("-") or flag_value or ("=" not in arg and not arg.startswith("~")):
                continue  # Hydra's own flags and their values (--help, --cfg job, -m)
            key = arg.lstrip("+~").partition("=")[0]
            top = key.split("/")[0].split("@")[0].split(".")[0].strip()
            if top and top not in keys:
                raise ConfigError(unknown_key_message(top, keys, config_name))

    check()


def rewrite_data_yaml_argv(argv: list | None = None) -> None:
    """``data=my_data.yaml`` (an ultralytics / Roboflow dataset file) becomes the equivalent ``data=yolo data.*=``
    overrides in ``sys.argv`` before Hydra composes (Hydra would look for a config group option of that name);
    a bad file is one line naming it, exit 1, before any run folder exists."""
    from ghostdet.data.data_yaml import resolve_data_yaml_overrides

    argv = sys.argv if argv is None else argv
    run_tool(lambda: argv.__setitem__(slice(1, None), resolve_data_yaml_overrides(argv[1:])))()


class _RunDir:
    """A run folder this command claimed before Hydra ran: removed again (with the parents it created) on failure."""

    def __init__(self, path: Path, created: list[Path]):
        self.path, self.created = path, created  # created: folders this command made, innermost first

    def remove(self) -> None:
        import shutil

        if self.path in self.created:
            shutil.rmtree(self.path, ignore_errors=True)
        else:  # the user's folder, empty before: empty it again
            for entry in list(self.path.iterdir()) if self.path.is_dir() else []:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        for folder in self.created:
            try:
                folder.rmdir()
            except OSError:
                pass  # not empty (another run wrote there meanwhile) or already gone

    def remove_if_empty(self) -> None:
        if self.path.is_dir() and not any(self.path.iterdir()):
            self.remove()


def _resolve_now(pattern: str) -> str | None:
    """``runs/eval/${now:%Y-%m-%d}/${now:%H-%M-%S}`` -> the folder name now; None if other interpolations remain."""
    import datetime
    import re

    now = datetime.datetime.now()
    resolved = re.sub(r"\$\{now:([^}]*)\}", lambda m: now.strftime(m.group(1)), pattern)
    return None if "${" in resolved else resolved


def _claim_run_dir(config_name: str, argv: list) -> _RunDir | None:
    """Create the run folder exclusively before Hydra does, and append ``hydra.run.dir=`` for the default one.

    ``hydra.run.dir=DIR`` given: refused when DIR holds files (Hydra would overwrite its .hydra/ and the tool its
    outputs). Not given: the config's timestamped name, with ``_2``, ``_3`` ... when a run of the same second has it.
    """
    import yaml

    args = argv[1:]
    if any(arg.startswith("-") for arg in args):
        return None  # --help, --cfg job, -m ...: Hydra prints or sweeps; not a single run of ours
    given = [arg.split("=", 1)[1].strip("'\"") for arg in args if arg.lstrip("+").startswith("hydra.run.dir=")]
    if given:
        if "${" in given[-1]:
            return None
        path = Path(given[-1])
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ConfigError(f"hydra.run.dir={given[-1]}: {path} already holds files; choose a new folder "
                              "(nothing was changed)")
        created = missing_folders(path)
        path.mkdir(parents=True, exist_ok=True)
        return _RunDir(path, created)
    raw = yaml.safe_load((config_dir() / f"{config_name}.yaml").read_text(encoding="utf-8")) or {}
    resolved = _resolve_now(str(((raw.get("hydra") or {}).get("run") or {}).get("dir") or ""))
    if not resolved:
        return None
    base, n = Path(resolved), 1
    created = missing_folders(base.parent)
    base.parent.mkdir(parents=True, exist_ok=True)
    while True:
        path = base if n == 1 else base.with_name(f"{base.name}_{n}")
        try:
            path.mkdir()  # exclusive: two commands started in the same second get two folders
            break
        except FileExistsError:
            n += 1
    argv.append(f"hydra.run.dir={path}")
    return _RunDir(path, [path, *created])


@contextlib.contextmanager
def fresh_run_dir(config_name: str, argv=None):
    """Around a Hydra tool's main: its run folder is new (or an empty one the user named), and a command that fails
    (an error, Ctrl-C, a Hydra error) leaves no run folder behind. ``argv`` (default ``sys.argv``) gets the default
    folder as ``hydra.run.dir=``."""
    argv = sys.argv if argv is None else argv
    claimed = []

    @run_tool
    def claim() -> None:
        claimed.append(_claim_run_dir(config_name, argv))

    claim()
    run_dir = claimed[0]
    try:
        yield run_dir.path if run_dir else None
    except BaseException as e:
        if run_dir is not None and not (isinstance(e, SystemExit) and e.code in (None, 0)):
            run_dir.remove()
        raise
    if run_dir is not None:
        run_dir.remove_if_empty()  # e.g. Hydra printed something and ran nothing


# ------------------------------------------------------------------ OpenVINO's signal stack
def drop_dangling_signal_stack() -> bool:
    """Disable this thread's alternate signal stack when it points at memory that is no longer mapped; True if it did.

    Why: OpenVINO's CPU plugin gives the threads that run a model an alternate signal stack and puts the previous
    one back when the model goes; two models whose lifetimes overlap (benchmark's openvino + openvino-bf16/-int8)
    leave the main thread with the first one's stack after it was freed. CPython installs every signal handler with
    SA_ONSTACK, so the next signal (the SIGCHLD of an exiting DataLoader worker, Ctrl-C) cannot be delivered and the
    kernel kills the process with SIGSEGV. Call after OpenVINO models are released. Linux only; elsewhere a no-op."""
    import ctypes
    import gc

    if not sys.platform.startswith("linux"):
        return False
    gc.collect()  # models held only by reference cycles go now, not during a later signal

    class StackT(ctypes.Structure):
        _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]

    ss_disable = 2
    libc = ctypes.CDLL(None, use_errno=True)
    current = StackT()
    if libc.sigaltstack(None, ctypes.byref(current)) != 0 or current.ss_flags & ss_disable or not current.ss_sp:
        return False
    start = current.ss_sp
    try:
        with open("/proc/self/maps", encoding="ascii") as maps:
            for line in maps:
                low, high = (int(v, 16) for v in line.split(None, 1)[0].split("-"))
                if low <= start < high:
                    return False  # a live stack (faulthandler's, or a model's still in use)
    except OSError:
        return False
    return libc.sigaltstack(ctypes.byref(StackT(None, ss_disable, 0)), None) == 0
