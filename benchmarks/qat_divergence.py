"""Where does a QAT int8 file depart from its QAT Keras model? Per int8 tensor, in quantization steps.

Runs the file in LiteRT without delegates and with every intermediate tensor
kept, and compares each int8 tensor (dequantized) with the Keras layer output
it stands for. A fused tensor carries several layers' names (conv; bn; relu;
fake-quant): it is compared with the one it matches best, so a real departure
shows as a tensor no layer matches within a step or two. Errors in steps of
the tensor's own scale: 0.5 is one rounding; error that grows gradually with
depth is rounding accumulating, a jump at one layer is a mismatch between
what QAT simulates and what the file computes.

The QAT model is the cached float zoo model (`benchmarks/qat_agreement.py
--cache DIR`) with ranges set by one epoch at learning rate 0 on 320 training
images: enough for the file's arithmetic, no fine-tuning needed.

Usage:
    python benchmarks/qat_divergence.py --model nasnet_mobile --cache DIR [--images 4] [--out FILE.md]
"""

import argparse
import os
import re
import time

import numpy as np
import keras
from ai_edge_litert.interpreter import Interpreter


def divergence(qat, x, content=None, top=25):
    from tfopt import export
    if content is None:
        content = export.to_tflite(qat, quantization="int8").content
    names = {}
    outs = []
    for layer in qat.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            out = layer.output
        except Exception:
            continue
        if isinstance(out, (list, tuple)):
            continue
        names[layer.name] = len(outs)
        outs.append(out)
    probe = keras.Model(qat.inputs, outs)
    from ai_edge_litert.interpreter import OpResolverType
    interp = Interpreter(model_content=content, experimental_preserve_all_tensors=True,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    rows = {}
    for i in range(len(x)):
        xi = x[i:i + 1]
        if inp["dtype"] == np.int8:
            s, z = inp["quantization"]
            interp.set_tensor(inp["index"], np.clip(np.round(xi / s + z), -128, 127).astype(np.int8))
        else:
            interp.set_tensor(inp["index"], xi.astype(np.float32))
        interp.invoke()
        kvals = probe(xi, training=False)
        kvals = [np.asarray(v) for v in kvals]
        for d in interp.get_tensor_details():
            if d["dtype"] != np.int8 or not d["quantization"][0]:
                continue
            try:
                t = interp.get_tensor(d["index"])
            except ValueError:
                continue
            s, z = d["quantization"]
            parts = re.split(r"[;/]", d["name"])
            cand = []
            for p in parts:
                for q in (p, re.sub(r"_\d+$", "", p)):
                    if q in names and q not in cand and tuple(kvals[names[q]].shape) == tuple(t.shape):
                        cand.append(q)
                        break
            if not cand:
                continue
            deq = (t.astype(np.float32) - z) * s
            # A fused tensor carries several layers' names (conv;bn;relu;quant):
            # it is the output of the one it matches best.
            errs = {c: float(np.max(np.abs(deq - kvals[names[c]])) / s) for c in cand}
            lname = min(errs, key=errs.get)
            k = kvals[names[lname]]
            err = errs[lname]
            key = (names[lname], lname)
            rows.setdefault(key, []).append((err, float(np.mean(np.abs(deq - k)) / s)))
    result = []
    for (order, lname), v in sorted(rows.items()):
        result.append((order, lname, type(qat.get_layer(lname)).__name__,
                       max(e for e, _ in v), float(np.mean([m for _, m in v]))))
    return result


def _bands(rows, edges=(0, 200, 600, 1000, 1400, 10 ** 6)):
    lines = []
    for low, high in zip(edges, edges[1:]):
        part = [r for r in rows if low <= r[0] < high]
        if part:
            worst = max(part, key=lambda r: r[3])
            lines.append(f"| {low}-{min(high, rows[-1][0] + 1)} | {len(part)} | "
                         f"{np.median([r[4] for r in part]):.2f} | {np.median([r[3] for r in part]):.1f} | "
                         f"{worst[3]:.1f} ({worst[1]}) |")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nasnet_mobile")
    parser.add_argument("--cache", required=True, help="directory of the trained float models")
    parser.add_argument("--images", type=int, default=4, help="test images compared")
    parser.add_argument("--out", default=None, help="write the bands table and every row here (.md)")
    args = parser.parse_args(argv)
    from tfopt import export
    from tfopt import quantization
    from tfopt import zoo
    from tfopt.bench import zoo_suite

    b = zoo_suite.budget(args.model)
    (x, y), (x_test, _) = zoo.task(args.model, n_train=b.n_train, n_test=b.n_test)
    path = os.path.join(args.cache, f"{args.model}-e{b.epochs}-n{b.n_train}-bn{b.bn_momentum}.keras")
    start = time.time()
    qat = quantization.quantize_model(keras.saving.load_model(path))
    qat.compile(optimizer=keras.optimizers.SGD(0.0),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x[:320], y[:320], batch_size=32, epochs=1, verbose=0)
    content = export.to_tflite(qat, quantization="int8").content
    rows = divergence(qat, x_test[:args.images], content)
    lines = [f"# QAT file vs QAT model per int8 tensor: {args.model}", "",
             f"Command: `python benchmarks/qat_divergence.py --model {args.model} --cache DIR "
             f"--images {args.images}`; {len(rows)} int8 tensors matched to a layer output; "
             f"{time.time() - start:.0f} s.", "",
             "| layers (graph order) | tensors | median of mean error, steps | median of max error, steps "
             "| worst max error, steps (layer) |", "|---|---|---|---|---|"] + _bands(rows)
    lines += ["", "| order | layer | type | max error, steps | mean error, steps |", "|---|---|---|---|---|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f} | {r[4]:.3f} |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
