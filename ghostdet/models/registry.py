"""The model registry: every detector part by name, and ``build_model(spec)`` to turn plain data into a module.

A **spec** is a registered name plus keyword arguments that are plain values only (numbers, strings,
booleans, None, lists of those, nested specs), e.g.::

    {"name": "ghost_yolo", "backbone": {"name": "ghostnet", "width": 1.0}, "neck_channels": 96}

This is how timm (``create_model``) and torchvision (``get_model``) describe models, and why a ghostdet
model file can never run code: a spec read from a file can only select constructors that Python code
registered beforehand (``@register_backbone("mine")``), with arguments checked against their signatures.
Nothing is ever imported because a file says so; plugins are imported only from the user's own config or
command line (:func:`import_plugins`).
"""
from __future__ import annotations

import importlib
import inspect
import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ghostdet.utils.errors import ConfigError, GhostdetError

log = logging.getLogger(__name__)

KINDS = ("backbone", "neck", "head", "detector")
# keys of Hydra's old ``_target_`` configs (checkpoints written before the registry)
_HYDRA_KEYS = ("_target_", "_args_", "_partial_", "_recursive_", "_convert_")
_PLAIN = (bool, int, float, str, type(None))


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str
    builder: Callable
    legacy_targets: tuple[str, ...]  # the ``_target_`` paths older ghostdet configs used for this builder


_REGISTRY: dict[str, Entry] = {}


def _register(kind: str, name: str):
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_{kind}: the name must be a non-empty string, got {name!r}")

    def decorator(builder: Callable) -> Callable:
        existing = _REGISTRY.get(name)
        if existing is not None and existing.builder is not builder:
            raise ValueError(f"{kind} name {name!r} is already registered ({existing.kind} "
                             f"{existing.builder.__module__}.{existing.builder.__qualname__}); pick another name")
        qual = builder.__qualname__
        legacy = (f"{builder.__module__}.{qual}", f"ghostdet.models.{qual}", f"ghostdet.models.{kind}s.{qual}")
        _REGISTRY[name] = Entry(name, kind, builder, legacy if builder.__module__.startswith("ghostdet.") else ())
        return builder

    return decorator


def register_backbone(name: str):
    """Decorator: register a backbone class or factory under ``name`` (it must accept ``features_only``)."""
    return _register("backbone", name)


def register_neck(name: str):
    return _register("neck", name)


def register_head(name: str):
    return _register("head", name)


def register_detector(name: str):
    return _register("detector", name)


def register_variant(name: str, builder: Callable, **fixed) -> Callable:
    """Register a named variant of a registered ``builder`` with some arguments fixed, as timm names its widths:
    ``register_variant("ghostnet_050", GhostNet, width=0.5)`` makes ``{"name": "ghostnet_050", "features_only": true}``
    build ``GhostNet(width=0.5, features_only=True)``. The variant's signature is the builder's without ``fixed``,
    so a spec is checked against it like any other."""
    kind = next((e.kind for e in _REGISTRY.values() if e.builder is builder), None)
    if kind is None:
        raise ValueError(f"register_variant({name!r}): register {builder.__qualname__} itself first")
    signature = inspect.signature(builder)
    unknown = [k for k in fixed if k not in signature.parameters]
    if unknown:
        raise ValueError(f"register_variant({name!r}): {builder.__qualname__} has no argument {', '.join(unknown)}")

    def variant(**kwargs):
        return builder(**fixed, **kwargs)

    variant.__signature__ = signature.replace(parameters=[p for n, p in signature.parameters.items() if n not in fixed])
    variant.__name__ = variant.__qualname__ = name
    variant.__module__ = builder.__module__
    variant.__doc__ = f"{builder.__qualname__}({', '.join(f'{k}={v!r}' for k, v in fixed.items())}, ...)"
    return _register(kind, name)(variant)


def list_models(kind: str | None = None) -> list[str]:
    """Registered names, sorted; ``kind`` in backbone | neck | head | detector restricts them."""
    return sorted(n for n, e in _REGISTRY.items() if kind is None or e.kind == kind)


def import_plugins(modules) -> list[str]:
    """Import the user's own modules that register models (``plugins=[my_pkg.backbones]``).

    Call this only with names from the user's config or command line, never with names read from a
    checkpoint or another model file.
    """
    if modules is None:
        return []
    if isinstance(modules, str):
        modules = [modules]
    done = []
    for module in modules:
        module = str(module).strip()
        if not module:
            continue
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ConfigError(f"plugins: cannot import {module!r} ({e}); is it installed or on PYTHONPATH?") from None
        done.append(module)
    if done:
        log.info("plugins imported: %s", ", ".join(done))
    return done


# --------------------------------------------------------------------------------------------- specs
def to_spec(node: Any, where: str = "model") -> dict:
    """A plain, validated spec from a dict or an OmegaConf node.

    Configs written before the registry (``_target_: ghostdet.models.detector.GhostYOLO``) are accepted when
    every ``_target_`` is the path of a registered ghostdet builder; any other ``_target_`` (or Hydra key) is
    refused with a ConfigError that names the key. Nothing named in the node is imported or called.
    """
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(node, (DictConfig, ListConfig)):
            node = OmegaConf.to_container(node, resolve=True)
    except Exception as e:  # an unresolvable interpolation in a config
        raise ConfigError(f"{where}: cannot read the model spec ({' '.join(str(e).split())})") from None
    return _spec(node, where)


def _legacy_name(target: Any, where: str) -> str:
    if isinstance(target, str):
        for entry in _REGISTRY.values():
            if target in entry.legacy_targets:
                return entry.name
    raise ConfigError(f"{where}._target_={target!r} is not a registered ghostdet model; refused (a model file may "
                      f"only name registered models: {', '.join(list_models())})")


def _spec(node: Any, where: str) -> dict:
    if not isinstance(node, Mapping):
        raise ConfigError(f"{where}: a model spec must be a mapping with a 'name', got {type(node).__name__}")
    node = dict(node)
    if "_target_" in node:
        if "name" in node:
            raise ConfigError(f"{where}: has both 'name' and '_target_'; keep only 'name'")
        node["name"] = _legacy_name(node.pop("_target_"), where)
    for key in _HYDRA_KEYS:
        if key in node:
            raise ConfigError(f"{where}.{key}: Hydra instantiation keys are not allowed in a model spec; refused")
    name = node.get("name")
    if not isinstance(name, str):
        raise ConfigError(f"{where}: a model spec needs 'name' (one of {', '.join(list_models())}), got {name!r}")
    spec = {"name": name}
    for key, value in node.items():
        if key == "name":
            continue
        if not isinstance(key, str) or not key.isidentifier():
            raise ConfigError(f"{where}: {key!r} is not a valid argument name; refused")
        spec[key] = _value(value, f"{where}.{key}")
    return spec


def _value(value: Any, where: str) -> Any:
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, (list, tuple)):
        return [_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return _spec(value, where)
    raise ConfigError(f"{where}: {type(value).__name__} is not a plain value (numbers, strings, booleans, lists, "
                      f"nested specs); refused")


def _entry(name: str, where: str) -> Entry:
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ConfigError(f"{where}: model {name!r} is not registered (registered: {', '.join(list_models())}); "
                          f"if it comes from your own code, import the module that registers it "
                          f"(plugins=[your_pkg.module] or --plugins your_pkg.module)")
    expected = where.rsplit(".", 1)[-1]  # an argument named after a kind (backbone=...) takes that kind
    if expected in KINDS and entry.kind != expected:
        raise ConfigError(f"{where}: {name!r} is a {entry.kind}, not a {expected} (registered {expected}s: "
                          f"{', '.join(list_models(expected))})")
    return entry


def _check_kwargs(entry: Entry, kwargs: dict, where: str) -> None:
    try:
        sig = inspect.signature(entry.builder)
    except (TypeError, ValueError):  # a builtin without a signature: let the call report
        return
    params = sig.parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        valid = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        unknown = [k for k in kwargs if k not in valid]
        if unknown:
            raise ConfigError(f"{where}: unknown argument(s) {', '.join(unknown)} for {entry.kind} {entry.name!r}; "
                              f"valid: {', '.join(valid)}")
    try:
        sig.bind(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where}: {entry.kind} {entry.name!r}: {e}") from None


def build_model(spec: Any, where: str = "model", **overrides):
    """Build the module a spec describes (nested specs first); ``overrides`` update its top-level arguments.

    ``build_model({"name": "ghost_yolo", "backbone": {"name": "ghostnet"}}, num_classes=3)``.
    Raises ConfigError (one line) for an unknown name, an unknown or missing argument, or a value that is not
    plain data; errors that a constructor raises for bad values (GhostdetError) pass through.
    """
    spec = to_spec(spec, where)
    spec.update({k: _value(v, f"{where}.{k}") for k, v in overrides.items()})
    return _build(spec, where)


def check_spec(spec: Any, where: str = "model") -> dict:
    """Validate a spec without building anything: plain values, registered names, arguments that fit each
    constructor's signature. Returns the plain spec; raises ConfigError (one line) otherwise."""
    spec = to_spec(spec, where)
    _check(spec, where)
    return spec


def _check(spec: dict, where: str) -> None:
    entry = _entry(spec["name"], where)
    for key, value in spec.items():
        if isinstance(value, dict):
            _check(value, f"{where}.{key}")
    _check_kwargs(entry, {k: v for k, v in spec.items() if k != "name"}, where)


def _build(spec: dict, where: str):
    entry = _entry(spec["name"], where)
    if entry.kind == "detector" and isinstance(spec.get("backbone"), dict):
        # a detector needs the backbone's three feature maps: features_only defaults to true inside one
        spec = {**spec, "backbone": {"features_only": True, **spec["backbone"]}}
    kwargs = {k: (_build(v, f"{where}.{k}") if isinstance(v, dict) else v) for k, v in spec.items() if k != "name"}
    _check_kwargs(entry, kwargs, where)
    try:
        return entry.builder(**kwargs)
    except GhostdetError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as e:  # a value of the wrong type or range
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ConfigError(f"{where}: {entry.kind} {entry.name!r} cannot be built from these arguments "
                          f"({type(e).__name__}: {msg})") from None


def without_pretrained(spec: dict) -> dict:
    """The spec with every ``pretrained`` argument set to None: weights come from the checkpoint itself, so
    rebuilding never reads a file the checkpoint names."""
    out = {}
    for key, value in spec.items():
        if key == "pretrained":
            out[key] = None
        elif isinstance(value, dict):
            out[key] = without_pretrained(value)
        else:
            out[key] = value
    return out
