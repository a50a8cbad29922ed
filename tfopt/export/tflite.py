"""Conversion of Keras models to TFLite (LiteRT) flatbuffers."""

import dataclasses
import gzip
import os
import tempfile

import keras


@dataclasses.dataclass(frozen=True)
class TFLiteExport:
    """A converted model and its sizes.

    Attributes:
        path: Where the file was written, or None if kept in memory.
        content: The flatbuffer bytes.
        size_bytes: Size of the file.
        gzip_bytes: Size after `gzip -9`, the measure tfmot's guides use
            for what sparsity saves in transfer and storage.
    """

    path: str | None
    content: bytes
    size_bytes: int
    gzip_bytes: int


def gzip_size(content):
    """Bytes of `content` compressed with gzip at level 9."""
    return len(gzip.compress(content, compresslevel=9, mtime=0))


def to_tflite(model, path=None):
    """Converts a Keras model to a float TFLite file.

    The model is exported as a SavedModel (Keras 3's `model.export`) and
    converted with TFLite builtin ops only, so an op TFLite lacks fails
    here, at conversion, and not on the device.

    Args:
        model: A built Keras model with defined input shapes (a pruned model
            should be passed through `tfopt.pruning.strip_pruning` first).
        path: Where to write the `.tflite` file; None keeps it in memory.

    Returns:
        A `TFLiteExport` with the bytes and sizes.

    Raises:
        TypeError: If `model` is not a Keras model.
        ValueError: If the model is not built or does not convert.

    Example:

    ```python
    exported = tfopt.export.to_tflite(final, "pruned.tflite")
    print(exported.size_bytes, exported.gzip_bytes)
    ```
    """
    import tensorflow as tf

    if not isinstance(model, keras.Model):
        raise TypeError(f"to_tflite takes a keras.Model, got {type(model).__name__}.")
    if not model.built:
        raise ValueError(
            f"Model {model.name!r} is not built; give it an Input shape first."
        )
    with tempfile.TemporaryDirectory() as tmp:
        saved = os.path.join(tmp, "saved_model")
        model.export(saved, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        try:
            content = converter.convert()
        except Exception as error:  # the converter raises several types
            raise ValueError(
                f"TFLite conversion of {model.name!r} failed: {error}"
            ) from error
    if path is not None:
        with open(path, "wb") as handle:
            handle.write(content)
    return TFLiteExport(
        path=path,
        content=content,
        size_bytes=len(content),
        gzip_bytes=gzip_size(content),
    )
