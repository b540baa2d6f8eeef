"""Export to deployable formats: ONNX (``export_onnx``), OpenVINO IR (``export_openvino``, needs openvino) and
TorchScript (``export_torchscript``), and the check
of an exported file against its PyTorch model (``verify_export``)."""
from ghostdet.export.onnx import export_onnx, prepare_for_export
from ghostdet.export.openvino import export_openvino
from ghostdet.export.torchscript import export_torchscript
from ghostdet.export.verify import ExportCheck, check_image, compare_detections, verify_export

__all__ = ["export_onnx", "export_openvino", "export_torchscript", "prepare_for_export", "verify_export", "check_image",
           "compare_detections", "ExportCheck"]
