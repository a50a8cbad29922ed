"""The settings every recipe shares, in one place.

`tfopt compress`, the benchmark suites (`tfopt bench`) and the compression
search (`tfopt tune`) train, calibrate and export with these values, so a
row of one is comparable with a trial of the other.
"""

# Training batch size of every recipe that trains.
BATCH_SIZE = 32
# Training examples that calibrate int8 post-training quantization (a few
# hundred suffice).
REPRESENTATIVE_EXAMPLES = 200
# Files are exported for batch-1 inference, the deployment shape: a fixed
# shape lets XNNPACK plan once (a dynamic batch was up to 30% slower here).
EXPORT_BATCH = 1
# QAT fine-tunes a trained model: a tenth of the training rate (1e-3) keeps
# it from forgetting while ranges settle (measured on digits-mobilenet-28:
# 1e-3 lost 1.7 points of int8 accuracy, 1e-4 gained 1.7).
QAT_LEARNING_RATE = 1e-4
# ... and anneals it to 0 over the fine-tuning (cosine): with BatchNormalization
# folded into the kernels nothing renormalizes a late large step. DenseNet121
# (8 + 2 epochs on digits) ended QAT at 0.925 with a constant 1e-4 against
# float 0.983, and at 0.989 with the decay (benchmarks/results/qat_agreement.md).
QAT_DECAY = "cosine"
# Learning rate of the recipes that train from scratch or fine-tune.
LEARNING_RATE = 1e-3
# What a GPU column says on a machine without one.
NO_GPU = "no GPU"
# The to_tflite modes that take representative (calibration) data.
CALIBRATED_MODES = ("int8", "int16x8")
# Under this top-1 agreement between an exported file and its Keras model
# (on the held-out or calibration data) the file is flagged with a warning:
# `tfopt.compress` and `tfopt.export.mixed_precision` use it.
WARN_AGREEMENT = 0.95
