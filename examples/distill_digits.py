"""Distil a big digits CNN into a small one, then prune + quantize it in one fit.

    python examples/distill_digits.py [--out DIR] [--image-size 16]

Trains a teacher (softmax head, ~315k parameters at 16x16), distils it into
the 6k-parameter digits CNN (logits head) with a hint on the first
convolution (4x wider in the teacher: an adapter projects the student's
channels), then distils again while the student is pruned to 80% and
quantization-aware trained, and exports the int8 file, checked in LiteRT.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfopt  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="results/distill_digits")
    parser.add_argument("--image-size", type=int, default=16, choices=(8, 16, 28))
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    keras.utils.set_random_seed(0)
    (x, y), (x_test, y_test) = tfopt.data.load_digits(args.image_size)

    teacher = tfopt.models.compile_classifier(tfopt.models.digits_teacher(args.image_size))
    teacher.fit(x, y, batch_size=32, epochs=args.epochs, verbose=0)
    print(f"teacher: {teacher.count_params():,} params, accuracy {teacher.evaluate(x_test, y_test, verbose=0)[1]:.4f}")

    student = tfopt.models.digits_cnn(args.image_size)
    hint = tfopt.distillation.FeatureDistillation(teacher.layers[0].name, student.layers[0].name, weight=0.1)
    distiller = tfopt.distillation.Distiller(student, teacher, temperature=4.0, alpha=0.1, features=[hint])
    distiller.compile(optimizer="adam", metrics=["accuracy"])
    # The teacher's outputs (and hinted features) are computed once.
    distiller.fit(distiller.cache_teacher(x), y, batch_size=32, epochs=args.epochs, verbose=0)
    accuracy = np.mean(np.argmax(student.predict(x_test, verbose=0), -1) == y_test)
    print(f"distilled student: {student.count_params():,} params, accuracy {accuracy:.4f}")

    steps = int(np.ceil(len(x) / 32)) * 6
    wrapped = tfopt.pruning.prune_low_magnitude(
        tfopt.quantization.quantize_model(student),
        pruning_schedule=tfopt.pruning.PolynomialDecay(0.0, 0.8, 0, steps // 2, frequency=1))
    distiller = tfopt.distillation.Distiller(wrapped, teacher, temperature=4.0, alpha=0.1)
    distiller.compile(optimizer=keras.optimizers.Adam(5e-4))
    distiller.fit(x, y, batch_size=32, epochs=6, verbose=0, callbacks=[tfopt.pruning.UpdatePruningStep()])
    final = tfopt.pruning.strip_pruning(distiller.student)

    teacher_file = tfopt.export.to_tflite(teacher, os.path.join(args.out, "teacher.tflite"))
    exported = tfopt.export.to_tflite(final, os.path.join(args.out, "student_int8.tflite"), quantization="int8")
    report = tfopt.export.verify(exported, final, x_test, y_test)
    print(f"pruned + QAT student, int8 file: Keras {report['keras_accuracy']:.4f}, "
          f"TFLite {report['tflite_accuracy']:.4f}, sparsity "
          f"{tfopt.pruning.sparsity_report(final)['total']['sparsity']:.2f}, "
          f"{exported.size_bytes:,} B = {exported.size_bytes / teacher_file.size_bytes:.4f}x the teacher's float file")


if __name__ == "__main__":
    main()
