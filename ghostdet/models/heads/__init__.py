"""Detection heads."""
from ghostdet.models.heads.yolo_head import YOLOHead

__all__ = ["YOLOHead"]
