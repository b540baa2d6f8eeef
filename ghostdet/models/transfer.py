"""Fine-tuning: start a model from the weights of an earlier ghostdet checkpoint (``weights=best.pt``).

Layers are matched by name and shape, as ultralytics' ``intersect_dicts`` and timm's ``load_pretrained`` do, but a
layer is loaded whole or not at all: a conv whose weight fits but whose BatchNorm does not starts fresh, so no
layer mixes trained and random tensors. What does not fit keeps the initialisation the model was built with (the
class branch's prior bias included), and the report says so in one line.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from ghostdet.utils.checkpoint import load_checkpoint, model_spec_of, model_state
from ghostdet.utils.errors import CheckpointError

CLASS_BRANCH = "head.cls_preds."  # the YOLO head's per-level class logit convs: all that depends on num_classes


@dataclass
class TransferReport:
    """What ``load_matching_weights`` did; ``str(report)`` is the one-line summary to log."""

    source: str
    loaded: list[str] = field(default_factory=list)          # model tensors taken from the checkpoint
    reinitialised: list[str] = field(default_factory=list)   # model tensors left as built
    unused: list[str] = field(default_factory=list)          # checkpoint tensors with no place in the model
    classes: tuple[int | None, int | None] = (None, None)    # (checkpoint, model) number of classes

    @property
    def total(self) -> int:
        return len(self.loaded) + len(self.reinitialised)

    def summary(self) -> str:
        line = f"loaded {len(self.loaded)}/{self.total} tensors from {self.source}"
        if self.reinitialised:
            line += f"; re-initialised {len(self.reinitialised)} ({_describe(self.reinitialised, self.classes)})"
        if self.unused:
            line += f"; {len(self.unused)} checkpoint tensors unused"
        return line

    __str__ = summary


def _part(key: str) -> str:
    return key.split(".", 1)[0] if "." in key else "input normalisation"


def _describe(keys: list[str], classes: tuple[int | None, int | None]) -> str:
    parts = Counter("class branch" if k.startswith(CLASS_BRANCH) else _part(k) for k in keys)
    only = len(parts) == 1
    text = []
    for part, count in parts.items():
        if part == "class branch" and classes[0] is not None and classes[0] != classes[1]:
            text.append(f"class branch{'' if only else f' {count}'}: {classes[0]} -> {classes[1]} classes")
        else:
            text.append(part if only else f"{part} {count}")
    return ", ".join(text)


def _layer(key: str) -> str:
    return key.rsplit(".", 1)[0] if "." in key else ""


def _checkpoint_classes(ckpt: dict, state: dict) -> int | None:
    names = ckpt.get("names")
    if isinstance(names, (list, tuple)) and names:
        return len(names)
    bias = state.get(f"{CLASS_BRANCH}0.bias")
    return int(bias.shape[0]) if isinstance(bias, torch.Tensor) and bias.dim() == 1 else None


def load_matching_weights(model: nn.Module, checkpoint_path: str | os.PathLike) -> TransferReport:
    """Load the layers of a ghostdet checkpoint (its EMA weights when present) that fit ``model`` by name and shape.

    A different number of classes re-initialises only the class branch; a checkpoint of the same backbone with
    another neck or head gives the backbone. The file is read with ``torch.load(weights_only=True)`` (no code runs)
    and must be a ghostdet training checkpoint. Raises CheckpointError (one line) for any other file, and for a
    checkpoint that shares no trainable layer with ``model``. Returns a ``TransferReport``.
    """
    source = str(checkpoint_path)
    ckpt = load_checkpoint(checkpoint_path, map_location="cpu")
    spec = model_spec_of(ckpt, source)  # a ghostdet checkpoint (spec of registered models), or CheckpointError
    try:
        state = model_state(ckpt)
    except CheckpointError as e:
        raise CheckpointError(f"{source}: {e}") from None
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    own = model.state_dict()

    layers: dict[str, list[str]] = {}
    for key in own:
        layers.setdefault(_layer(key), []).append(key)
    take = {}
    for keys in layers.values():
        if all(k in state and state[k].shape == own[k].shape for k in keys):
            take.update({k: state[k] for k in keys})
    trainable = {name for name, _ in model.named_parameters()}
    if not trainable & set(take):
        backbone = spec["backbone"].get("name") if isinstance(spec.get("backbone"), dict) else None
        what = f"{spec['name']}" + (f" with backbone {backbone}" if backbone else "")
        raise CheckpointError(
            f"{source}: shares no layer with this model (no weight matches in name and shape; the checkpoint is a "
            f"{what}); fine-tune from a checkpoint of the same backbone, or train from scratch")
    missing, _ = model.load_state_dict(take, strict=False)  # every key taken is a model key: nothing unexpected
    return TransferReport(
        source=source,
        loaded=[k for k in own if k in take],
        reinitialised=list(missing),
        unused=[k for k in state if k not in take],
        classes=(_checkpoint_classes(ckpt, state), getattr(model, "num_classes", None)),
    )


__all__ = ["TransferReport", "load_matching_weights"]
