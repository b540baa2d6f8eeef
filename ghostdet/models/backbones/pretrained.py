"""Loading the authors' ImageNet weights (local files only) into a backbone by their own key names."""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping

import torch
import torch.nn as nn

from ghostdet.utils.checkpoint import load_checkpoint
from ghostdet.utils.errors import CheckpointError

LOGGER = logging.getLogger(__name__)

# Wrappers used by the releases and by timm/ghostdet training scripts; EMA weights first (they are the ones
# evaluated and released when present).
_WRAPPER_KEYS = ("state_dict_ema", "model_ema", "ema", "state_dict", "model")
# Buffers that the thop profiler leaves in some released files.
_PROFILER_SUFFIXES = ("total_ops", "total_params")


def unwrap_state_dict(obj, where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The state dict inside a released file: unwraps ``state_dict_ema``/``model_ema``/``ema``/``state_dict``/
    ``model``, strips DataParallel's ``module.`` prefix and drops profiler buffers."""
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner:
                obj = inner
                break
    if not isinstance(obj, Mapping) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{where}: holds no state dict of tensors; pass a weights file saved with "
                              "torch.save(model.state_dict(), ...) or a release checkpoint")
    state = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor) or key.endswith(_PROFILER_SUFFIXES):
            continue
        state[key[len("module."):] if key.startswith("module.") else key] = value
    return state


def _fmt(pairs: list[str]) -> str:
    return ", ".join(pairs[:3]) + (f" (+{len(pairs) - 3} more)" if len(pairs) > 3 else "")


def load_pretrained(model: nn.Module, path: str | os.PathLike, skip_prefixes: Iterable[str] = (),
                    hint: str = "build the model with the variant/width (and num_classes) the file was trained for",
                    ) -> nn.Module:
    """Load ``path`` into ``model`` strictly, by key name.

    ``skip_prefixes``: key prefixes of layers the model did not build (the classifier head in
    ``features_only`` mode); keys of the file under them are ignored. Every other key must match in name
    and shape, else a CheckpointError names the first mismatching keys and shapes, followed by ``hint``.
    """
    where = str(path)
    state = unwrap_state_dict(load_checkpoint(path), where)
    skip = tuple(skip_prefixes)
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own or not (skip and k.startswith(skip))}

    missing = [f"{k} {tuple(v.shape)}" for k, v in own.items() if k not in state]
    unexpected = [f"{k} {tuple(v.shape)}" for k, v in state.items() if k not in own]
    mismatched = [f"{k} file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                  for k, v in state.items() if k in own and v.shape != own[k].shape]
    if missing or unexpected or mismatched:
        problems = []
        if mismatched:
            problems.append(f"shape mismatch: {_fmt(mismatched)}")
        if missing:
            problems.append(f"missing in file: {_fmt(missing)}")
        if unexpected:
            problems.append(f"not in model: {_fmt(unexpected)}")
        raise CheckpointError(
            f"{where}: weights do not fit {type(model).__name__} ({'; '.join(problems)}); {hint}"
        )
    model.load_state_dict(state, strict=True)
    LOGGER.info("loaded %d tensors from %s into %s", len(state), where, type(model).__name__)
    return model
