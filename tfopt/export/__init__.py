"""Export of Keras models to TFLite (LiteRT)."""

from tfopt.export.tflite import TFLiteExport
from tfopt.export.tflite import gzip_size
from tfopt.export.tflite import to_tflite

__all__ = ["TFLiteExport", "gzip_size", "to_tflite"]
