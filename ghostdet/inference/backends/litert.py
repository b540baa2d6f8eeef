"""LiteRT (TFLite) backend for the ``.tflite`` files ``tools/export.py --format litert`` writes (fp32, fp16 weights,
int8), run with ``ai-edge-litert``'s interpreter (XNNPACK on the CPU) through the ``serving_default`` signature:
input ``args_0`` B x 3 x H x W float32, outputs ``output_0`` (boxes) and ``output_1`` (scores). The batch and size are
the file's (``fixed_batch``, ``fixed_imgsz``); ``Detector`` pads a short batch. The ghostdet metadata is the file's
metadata entry ``ghostdet``, read with the flatbuffer schema ``ai-edge-litert`` ships (no interpreter needed).

Precision is the file's own (fp16 weights are widened at load; int8 kernels where the file is int8): a hint other
than the file's precision is refused. An int8 file takes its input as int8 (scale about 1/255, zero point -128): the
backend quantizes the 0-1 batch with the file's own scale and zero point; outputs are float32 in every precision. Threads: ``threads`` (None: the interpreter's default).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ghostdet.inference.backends import first_line
from ghostdet.utils.errors import CheckpointError, ConfigError
from ghostdet.utils.exported import META_KEY, parse_metadata

SIGNATURE = "serving_default"
OUTPUT_KEYS = ("output_0", "output_1")  # boxes, scores: the order of DecodedOutputs' return


def import_litert():
    try:
        from ai_edge_litert import interpreter
    except ImportError:
        raise ConfigError("LiteRT models need ai-edge-litert: pip install 'ghostdet[litert]' (or pip install "
                          "ai-edge-litert)") from None
    return interpreter


def _read(path: Path) -> bytes:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such LiteRT file; check the path or export one with tools/export.py --format litert")
    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise CheckpointError(f"{path}: not a LiteRT/TFLite model (no TFL3 identifier); re-export it with "
                              "tools/export.py --format litert")
    return data


def read_metadata(path: str | os.PathLike) -> dict:
    """The ``ghostdet`` metadata entry of the ``.tflite`` (validated); ``{}`` when it has none."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        import_litert()
        raise
    path = Path(path)
    data = _read(path)
    try:
        model = schema.Model.GetRootAs(data, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if (entry.Name() or b"").decode() != META_KEY:
                continue
            buffer = model.Buffers(entry.Buffer())
            if buffer.Offset() > 1:  # large models keep buffers after the flatbuffer
                raw = data[buffer.Offset(): buffer.Offset() + buffer.Size()]
            else:
                raw = buffer.DataAsNumpy().tobytes() if buffer.DataLength() else b""
            return parse_metadata(raw.decode("utf-8"), path)
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(f"{path}: unreadable LiteRT flatbuffer ({first_line(e)}); re-export it with "
                              "tools/export.py --format litert") from None
    return {}


class LiteRtBackend:
    """An ``ai_edge_litert`` interpreter of an export from ``ghostdet.export.litert`` (see the module docstring)."""

    kind = "litert"
    nms = False

    def __init__(self, path: Path, precision: str | None = None, threads: int | None = None):
        interpreter = import_litert()
        self.path = Path(path)
        self.meta = read_metadata(self.path)
        own = self.meta.get("precision") or "fp32"
        if precision not in (None, "auto", own):
            raise ConfigError(f"precision {precision}: this LiteRT file is {own} and runs as such (export another with "
                              "--half or --int8); drop --precision")
        self.precision, self.threads = own, int(threads) if threads else None
        self._first = True
        from ghostdet.inference.backends.mnn import quiet_native_output

        try:
            with quiet_native_output(1, 2):  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on stderr
                self.interpreter = interpreter.Interpreter(model_path=str(self.path), num_threads=self.threads)
                self.runner = self.interpreter.get_signature_runner(SIGNATURE)
        except Exception as e:
            raise CheckpointError(f"{self.path}: not a loadable LiteRT model ({first_line(e)}); re-export it with "
                                  "tools/export.py --format litert") from None
        signature = self.interpreter.get_signature_list().get(SIGNATURE, {})
        inputs, outputs = signature.get("inputs", []), signature.get("outputs", [])
        if len(inputs) != 1 or sorted(outputs) != sorted(OUTPUT_KEYS):
            raise CheckpointError(f"{self.path}: signature {SIGNATURE} has inputs {inputs} and outputs {outputs}; "
                                  "expected one image input -> output_0 (boxes), output_1 (scores)")
        self.input_key = inputs[0]
        shape = [int(s) for s in self.runner.get_input_details()[self.input_key]["shape"]]
        if len(shape) != 4 or shape[1] != 3:
            raise CheckpointError(f"{self.path}: input has shape {shape}; expected B x 3 x H x W")
        self.fixed_batch, self.fixed_imgsz = shape[0], (shape[2], shape[3])
        detail = self.runner.get_input_details()[self.input_key]
        # an int8 file takes the image quantized (scale ~1/255): done here, so every caller passes 0-1 floats
        self.input_dtype = np.dtype(detail["dtype"])
        self.input_scale, self.input_zero = (float(detail["quantization"][0]), int(detail["quantization"][1]))
        names = self.meta.get("names")
        nc = int(self.runner.get_output_details()[OUTPUT_KEYS[1]]["shape"][-1])
        self.num_classes = len(names) if names else nc

    def __call__(self, batch: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if tuple(batch.shape[2:]) != self.fixed_imgsz or batch.shape[0] != self.fixed_batch:
            raise ConfigError(f"LiteRT input {tuple(batch.shape)}: this file takes {self.fixed_batch} x 3 x "
                              f"{self.fixed_imgsz[0]} x {self.fixed_imgsz[1]}")
        if self.input_dtype.kind in "iu":
            info = np.iinfo(self.input_dtype)
            batch = np.clip(np.rint(batch / self.input_scale) + self.input_zero, info.min, info.max).astype(self.input_dtype)
        try:
            if self._first:  # XNNPACK is set up on the first run and says so on stderr
                from ghostdet.inference.backends.mnn import quiet_native_output

                with quiet_native_output(1, 2):
                    out = self.runner(**{self.input_key: batch})
                self._first = False
            else:
                out = self.runner(**{self.input_key: batch})
        except Exception as e:
            raise CheckpointError(f"{self.path}: LiteRT could not run it ({first_line(e)})") from None
        boxes = np.array(out[OUTPUT_KEYS[0]], dtype=np.float32)  # copies: the interpreter reuses its buffers
        scores = np.array(out[OUTPUT_KEYS[1]], dtype=np.float32)
        return torch.from_numpy(boxes), torch.from_numpy(scores)

    def describe(self) -> str:
        return f"LiteRT {self.precision} (XNNPACK CPU{f', {self.threads} threads' if self.threads else ''})"


def load(path: str | os.PathLike, *, device: str = "cpu", precision: str | None = None, threads: int | None = None):
    """A ``LiteRtBackend`` on the ``.tflite`` at ``path`` (CPU; the file's own precision)."""
    if str(device).lower() not in ("cpu", ""):
        raise ConfigError(f"device {device!r}: ghostdet runs LiteRT models on the CPU only; use --device cpu")
    return LiteRtBackend(Path(path), precision, threads)


def unavailable(precision: str | None) -> str | None:
    if precision not in (None, "auto", "fp32", "fp16", "int8"):
        return f"LiteRT runs fp32, fp16 or int8 files, not {precision}"
    return None


__all__ = ["LiteRtBackend", "import_litert", "load", "read_metadata", "unavailable"]
