"""Moved: the OpenVINO runtime is ``ghostdet.inference.backends.openvino``. This module keeps the old names for
scripts (``read_metadata(model, xml)`` is ``ir_metadata`` there)."""
from ghostdet.inference.backends.openvino import (IR_XML, PRECISIONS, OpenVinoBackend, compile_config, compile_model,
                                                  cpu_supports_bf16, find_ir, import_openvino, ir_metadata, load_backend,
                                                  openvino_available, read_ir, reason, resolve_precision)
from ghostdet.utils.exported import METADATA_FILE

read_metadata = ir_metadata
_reason = reason

__all__ = ["IR_XML", "METADATA_FILE", "PRECISIONS", "OpenVinoBackend", "compile_config", "compile_model",
           "cpu_supports_bf16", "find_ir", "import_openvino", "load_backend", "openvino_available", "read_ir",
           "read_metadata", "resolve_precision"]
