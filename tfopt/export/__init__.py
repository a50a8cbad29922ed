"""Export of Keras models to TFLite (LiteRT), and checks of the result.

`to_tflite` converts (float or quantized) and returns a `TFLiteExport`;
`inspect_tflite` reads ops, io and weights out of any `.tflite` file;
`quantize_tflite` (int4, blockwise, int16x8 with litert-quantizer) and
`mixed_precision` (a precision per layer under a byte budget);
`verify` and `evaluate_tflite` run the file in the LiteRT interpreter and
compare it with Keras or score it on labelled data.
"""

from tfopt.export.inspect import inspect_tflite
from tfopt.export.inspect import op_precision
from tfopt.export.lowbit import LowBitExport
from tfopt.export.lowbit import quantize_tflite
from tfopt.export.mixed_precision import mixed_precision
from tfopt.export.tflite import ConversionError
from tfopt.export.tflite import TFLiteExport
from tfopt.export.tflite import gzip_size
from tfopt.export.tflite import to_tflite
from tfopt.export.tflite import unroll_recurrent
from tfopt.export.verify import evaluate_tflite
from tfopt.export.verify import verify

__all__ = [
    "LowBitExport",
    "ConversionError",
    "TFLiteExport",
    "evaluate_tflite",
    "gzip_size",
    "inspect_tflite",
    "mixed_precision",
    "quantize_tflite",
    "op_precision",
    "to_tflite",
    "unroll_recurrent",
    "verify",
]
