"""The `tfopt` command line.

    tfopt export MODEL.keras --out MODEL.tflite   float TFLite export
    tfopt sparsity MODEL.keras                    per-layer sparsity table
"""

import argparse
import os
import sys


def _load(path):
    import keras

    import tfopt  # noqa: F401  (registers tfopt's layers for loading)

    if not os.path.isfile(path):
        raise SystemExit(f"tfopt: no such model file: {path}")
    return keras.models.load_model(path)


def _export(args):
    from tfopt import export
    from tfopt import pruning

    model = _load(args.model)
    if pruning.api.pruning_wrappers(model):
        model = pruning.strip_pruning(model)
    result = export.to_tflite(model, args.out)
    print(f"wrote {args.out}: {result.size_bytes} bytes, {result.gzip_bytes} gzipped")


def _sparsity(args):
    from tfopt import pruning

    report = pruning.sparsity_report(_load(args.model))
    print(f"{'layer':30} {'weight':20} {'size':>10} {'sparsity':>9}")
    for row in report["layers"]:
        print(f"{row['layer']:30} {row['weight']:20} {row['size']:>10} {row['sparsity']:>9.4f}")
    total = report["total"]
    print(f"{'total':51} {total['size']:>10} {total['sparsity']:>9.4f}")


def main(argv=None):
    """Entry point of the `tfopt` console script."""
    parser = argparse.ArgumentParser(prog="tfopt", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="export a .keras model to float TFLite")
    export.add_argument("model")
    export.add_argument("--out", required=True)
    export.set_defaults(run=_export)
    sparsity = commands.add_parser("sparsity", help="print a model's sparsity")
    sparsity.add_argument("model")
    sparsity.set_defaults(run=_sparsity)
    args = parser.parse_args(argv)
    args.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
