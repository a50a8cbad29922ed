"""Quantization-aware training for Keras 3, exported to real int8 TFLite."""

from tfopt.quantization.api import QuantizeAnnotate
from tfopt.quantization.api import is_quantized
from tfopt.quantization.api import quantize_annotate_layer
from tfopt.quantization.api import quantize_annotate_model
from tfopt.quantization.api import quantize_apply
from tfopt.quantization.api import quantize_model
from tfopt.quantization.config import QuantizeConfig
from tfopt.quantization.layers import QuantizeActivation
from tfopt.quantization.layers import QuantizeWrapper

__all__ = [
    "QuantizeActivation",
    "QuantizeAnnotate",
    "QuantizeConfig",
    "QuantizeWrapper",
    "is_quantized",
    "quantize_annotate_layer",
    "quantize_annotate_model",
    "quantize_apply",
    "quantize_model",
]
