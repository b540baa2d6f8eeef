"""Post-training int8 of an exported Ghost-YOLO, with its accuracy cost measured. The parts live in
``ghostdet.export.calibration`` (images), ``ghostdet.export.quantizers`` (ONNX Runtime QDQ, NNCF, the float tail),
``ghostdet.export.accuracy`` (the gate: ``quantize_export``, ``evaluate_runtime``) and ``ghostdet.export.publish``
(names, staging); this module keeps the names scripts and tools import from here."""
from ghostdet.export.accuracy import (EVAL_SETTINGS, MAX_MAP_DROP, Int8Result, ValSplit, evaluate_runtime,
                                      exported_runtime_model, quantize_export)
from ghostdet.export.calibration import (CALIBRATION_IMAGES, batched, calibration_images, images_to_batches,
                                         synthetic_calibration)
from ghostdet.export.publish import int8_path_for
from ghostdet.export.quantizers import (float_tail_onnx, float_tail_openvino, import_nncf, nncf_available,
                                        quantize_onnx, quantize_openvino_model)
from ghostdet.inference.backends import BackendModule as RuntimeModel

__all__ = ["CALIBRATION_IMAGES", "EVAL_SETTINGS", "MAX_MAP_DROP", "Int8Result", "RuntimeModel", "ValSplit", "batched",
           "calibration_images", "evaluate_runtime", "exported_runtime_model", "float_tail_onnx",
           "float_tail_openvino", "images_to_batches", "import_nncf", "int8_path_for", "nncf_available",
           "quantize_export", "quantize_onnx", "quantize_openvino_model", "synthetic_calibration"]
