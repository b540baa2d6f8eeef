"""ultralytics / Roboflow dataset files: ``data=my_data.yaml``.

The file ultralytics, YOLOv5 and Roboflow exports write::

    path: ../datasets/my_set   # dataset root: absolute, or relative to this file (default: this file's folder)
    train: images/train        # a folder, a .txt list of images, or a list of those; relative to path
    val: images/val            # Roboflow: ../valid/images beside valid/ (read as valid/images, as ultralytics does)
    names: [cat, dog]          # or {0: cat, 1: dog}; nc: alone gives class0, class1, ...

``data_config_from_yaml(file)`` turns it into ghostdet's ``data`` config (``format: yolo``, see
configs/data/yolo.yaml) and ``resolve_data_yaml_overrides(argv)`` rewrites ``data=my_data.yaml`` on a Hydra
command line into the equivalent ``data=yolo data.root=... data.train=...`` overrides, before Hydra composes
(Hydra would look for a config group option called ``my_data.yaml``). Everything is checked here, so a bad file
fails with one ``DataError`` line naming it before a run folder exists.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import yaml

from ghostdet.data.yolo import resolve_entry, yolo_names
from ghostdet.utils.errors import DataError

YAML_SUFFIXES = (".yaml", ".yml")
# the ghostdet keys a dataset file sets; a data.<key>=... of the user's own on the same command line wins
_EMITTED = ("root", "train", "val", "data_yaml", "strict_names")


def is_data_yaml(value: str) -> bool:
    """Whether a ``data=`` value names a dataset file rather than a config group (``data=coco128``)."""
    return str(value).strip().strip("'\"").lower().endswith(YAML_SUFFIXES)


def read_dataset_yaml(path: str | os.PathLike) -> tuple[dict, Path]:
    """The mapping in an ultralytics dataset file and its absolute path (DataError naming the file otherwise)."""
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        hint = "" if file.parent.is_dir() else f" (no folder {file.parent})"
        raise DataError(f"dataset file {file} not found{hint}; pass data=PATH.yaml (an ultralytics/Roboflow file with "
                        f"path/train/val/names), or a built-in data config without .yaml (data=coco128)")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8-sig"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
        raise DataError(f"cannot read {file}: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        raise DataError(f"{file}: not a dataset file (expected a mapping with train:, val: and names:)")
    missing = [k for k in ("train", "val") if data.get(k) in (None, "", [])]
    if data.get("names") in (None, "", [], {}) and data.get("nc") in (None, 0):
        missing.append("names")
    if missing:
        raise DataError(f"{file}: no {', '.join(f'{k}:' for k in missing)} key; a dataset file needs train: and val: "
                        f"(image folders or .txt lists) and names: (a list or {{index: name}})")
    return data, file


def dataset_root(data: dict, file: Path) -> Path:
    """``path:`` as a folder: absolute as written, else relative to the file's folder (or, failing that, to the
    working directory, where YOLOv5-era files point); no ``path:`` means the file's own folder."""
    value = data.get("path")
    if value in (None, ""):
        return file.parent
    if not isinstance(value, str):
        raise DataError(f"{file}: path: must be a folder name, got {value!r}")
    path = Path(value).expanduser()
    candidates = [path] if path.is_absolute() else [file.parent / path, Path.cwd() / path]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    looked = " or ".join(str(c.resolve()) for c in candidates)
    raise DataError(f"{file}: path: {value} not found (looked for {looked}); set path: to the dataset folder "
                    f"(absolute, or relative to this file){_download_hint(data)}")


def _download_hint(data: dict) -> str:
    return "; its download: is never run (ghostdet reads local data only)" if data.get("download") else ""


def _split(data: dict, file: Path, root: Path, split: str) -> list[str] | str:
    value = data[split]
    entries = list(value) if isinstance(value, (list, tuple)) else [value]
    if not all(isinstance(e, str) and e.strip() for e in entries):
        raise DataError(f"{file}: {split}: must be a folder, a .txt list of images, or a list of those; got {value!r}")
    out = []
    for entry in entries:
        path = resolve_entry(entry.strip(), root)
        if not (path.is_dir() or (path.is_file() and path.suffix.lower() == ".txt")):
            what = "image list" if entry.lower().endswith(".txt") else "image folder"
            raise DataError(f"{file}: {split}: {entry} not found ({what} {path}, relative to {root}); "
                            f"fix {split}: or path:{_download_hint(data)}")
        try:
            out.append(path.relative_to(root).as_posix() or ".")
        except ValueError:  # outside the root: keep it absolute
            out.append(str(path))
    return out if isinstance(value, (list, tuple)) else out[0]


def data_config_from_yaml(path: str | os.PathLike) -> dict:
    """ghostdet's ``data`` config for an ultralytics/Roboflow dataset file (for ``build_dataset``).

    Checks the file, ``path:``, every ``train:``/``val:`` entry and the names (``nc`` must agree with them), and
    sets ``strict_names``: a label class id beyond the names is then an error of the file, not a dropped line.
    """
    data, file = read_dataset_yaml(path)
    root = dataset_root(data, file)
    train, val = (_split(data, file, root, s) for s in ("train", "val"))
    names = yolo_names({}, root, data, file)  # list or {index: name}; DataError naming the file
    nc = data.get("nc")
    if data.get("names") and nc is not None and (not isinstance(nc, int) or nc != len(names)):
        raise DataError(f"{file}: nc: {nc} but names: lists {len(names)} classes; fix one of them")
    return {"format": "yolo", "root": str(root), "train": train, "val": val, "names": None, "data_yaml": str(file),
            "strict_names": True, "cache": True, "cache_images": False}


def hydra_quote(value: str) -> str:
    """A string as a quoted Hydra override value that comes back unchanged (spaces, commas, quotes, ``${``)."""
    out = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", str(value))  # backslashes before a quote are escapes
    out = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, out)
    return "'" + out.replace("${", "\\${") + "'"  # no interpolation inside a path


def _override_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_quote(v) for v in value) + "]"
    return hydra_quote(value)


def resolve_data_yaml_overrides(argv: Sequence[str]) -> list[str]:
    """Hydra overrides with every ``data=FILE.yaml`` replaced by ``data=yolo`` plus the ``data.*`` values of that
    file (``data_config_from_yaml``). Other arguments pass through unchanged; a ``data.<key>=`` the user gives
    on the same command line wins over the file's. Raises DataError (one line naming the file) for a bad file.
    """
    argv = list(argv)
    user_keys = {a.split("=", 1)[0].lstrip("+~")[len("data."):] for a in argv if a.lstrip("+~").startswith("data.")}
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not (sep and key in ("data", "+data", "++data") and is_data_yaml(value)):
            out.append(arg)
            continue
        cfg = data_config_from_yaml(value.strip().strip("'\""))
        out.append("data=yolo")
        out += [f"data.{k}={_override_value(cfg[k])}" for k in _EMITTED if k not in user_keys]
    return out


__all__ = ["data_config_from_yaml", "dataset_root", "hydra_quote", "is_data_yaml", "read_dataset_yaml",
           "resolve_data_yaml_overrides"]
