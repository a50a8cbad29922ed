"""Per-step cost of magnitude pruning vs the dense model, by model size.

Issue 14, item 6: with a mask update every step
(`PolynomialDecay(0, 0.8, 0, 100000, frequency=1)`) and batch 128, how much
slower is a pruned model's `train_on_batch` than the same dense model's, at
0.1M, 1M, 2.1M and 10M prunable weights (MLPs on random data)?

Measured in ONE process per tool, in paired interleaved rounds: each round
times a block of `train_on_batch` steps of every variant (the order rotates
between rounds); the ratio of a round is pruned / dense of that round, and
the report gives the median ratio over rounds and its spread (min-max), so
load from other processes hits both sides of a pair alike.

Variants (tfopt, this process):
  dense        the unpruned model
  tfopt        `prune_low_magnitude` as shipped: the schedule and the mask
               update run in one non-inlined `tf.function` shared by the
               wrappers of one weight shape; weights with >= 64k elements
               grow their mask by the few weights near the previous
               threshold (`masks.grow_mask`), falling back to the
               warm-started XLA selection (`masks.update_mask`)
  tfopt-old    the same wrapper with the update traced inline in every
               wrapper (`wrapper._INLINE_UPDATES`) and no sort path
               (`masks.SORT_MAX_SIZE = 0`), i.e. main's code before this
               change
  tfopt-fixed  no mask update (`frequency=100000`): the wrapper's fixed cost
               (masked forward and gradient, the cond, the step counter)
and, in a `TF_USE_LEGACY_KERAS=1` subprocess (this file with --tfmot-worker),
tf_keras dense vs tfmot's `prune_low_magnitude` (its UpdatePruningStep hook
timed as part of the step).

With `--many-layers N`, a second table: the cost of many pruned layers,
on a stack of N small convolutions (Conv2D(8, 3) on 8x8x8 inputs, batch 32:
a fast proxy of NASNetMobile's ~190 prunable layers). Per variant: the
graph ops `train_step` adds per pruned layer (traced on a 10-layer copy),
the first `train_on_batch` (trace, graph optimisation and one step) and
the steady step ratio (interleaved rounds, as above). Variants: dense;
`tfopt` as shipped (one non-inlined update function shared by the layers
of one shape and schedule; weights of <= `masks.SORT_MAX_SIZE` elements
ranked by one sort); `tfopt-radix` (shared, radix select at every size);
`tfopt-inline` (the update traced inline in every wrapper with the radix
select: main's code before this change). `--sizes none` skips the MLP
table.

    python benchmarks/pruning_overhead.py --out benchmarks/results/pruning_overhead
        [--sizes 0.1M,1M,2.1M,10M] [--rounds 15] [--no-tfmot] [--no-old]
        [--many-layers 100]
"""

import sys

TFMOT_WORKER = "--tfmot-worker" in sys.argv

import os  # noqa: E402

if TFMOT_WORKER:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"  # tfmot needs Keras 2 (tf_keras)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

# name -> MLP layer widths (input first); prunable weights = the kernels.
SIZES = {
    "0.1M": (784, 128, 10),
    "1M": (1024, 1024, 10),
    "2.1M": (1024, 1024, 1024, 10),
    "10M": (1024, 2048, 2048, 2048, 10),
}
# Steps per timed block: short blocks (a fraction of a second) so that both
# sides of a pair see the same load on a shared machine.
STEPS = {"0.1M": 20, "1M": 4, "2.1M": 3, "10M": 1}
BATCH = 128
SCHEDULE = dict(initial_sparsity=0.0, final_sparsity=0.8, begin_step=0,
                end_step=100000, frequency=1)


def kernel_count(widths):
    return sum(a * b for a, b in zip(widths[:-1], widths[1:]))


def build(keras, widths):
    model = keras.Sequential(
        [keras.Input((widths[0],))]
        + [keras.layers.Dense(w, activation="relu") for w in widths[1:-1]]
        + [keras.layers.Dense(widths[-1])]
    )
    return model


def compile_model(keras, model):
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


class Timed:
    """A model driven by train_on_batch (and its callback's batch hook)."""

    def __init__(self, model, x, y, callback=None):
        self.model, self.x, self.y, self.callback = model, x, y, callback
        self.step = 0
        if callback is not None:
            callback.set_model(model)
            callback.on_train_begin()

    def run(self, steps):
        start = time.perf_counter()
        for _ in range(steps):
            if self.callback is not None:
                self.callback.on_train_batch_begin(self.step)
            self.model.train_on_batch(self.x, self.y)  # returns numpy: synced
            self.step += 1
        return (time.perf_counter() - start) / steps * 1000.0


def interleave(variants, steps, rounds, warmup=3):
    """{name: [ms per step of each round]}, blocks interleaved, order rotated."""
    for timed in variants.values():
        timed.run(warmup)  # trace, compile (XLA), first mask updates
    names = list(variants)
    times = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            times[name].append(variants[name].run(steps))
    return times


def summarize(times, baseline="dense"):
    out = {"ms_per_step_median": {k: float(np.median(v)) for k, v in times.items()},
           "ms_per_step_rounds": times, "ratio": {}}
    for name, values in times.items():
        if name == baseline:
            continue
        ratios = [p / d for p, d in zip(values, times[baseline])]
        out["ratio"][name] = {"median": float(np.median(ratios)),
                              "of_medians": float(np.median(values) / np.median(times[baseline])),
                              "min": float(min(ratios)), "max": float(max(ratios)),
                              "rounds": ratios}
    return out


def data(widths, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH, widths[0])).astype("float32")
    y = rng.integers(0, widths[-1], size=BATCH).astype("int32")
    return x, y


# --------------------------------------------------------------------------- #
# tfopt (Keras 3)
# --------------------------------------------------------------------------- #


def run_tfopt(size, rounds, with_old):
    import keras

    from tfopt import pruning
    from tfopt.pruning import masks
    from tfopt.pruning import wrapper

    sort_max = masks.SORT_MAX_SIZE
    widths = SIZES[size]
    x, y = data(widths)
    keras.utils.set_random_seed(0)
    dense = build(keras, widths)
    init = dense.get_weights()

    def pruned(old=False, frequency=1):
        model = build(keras, widths)
        model.set_weights(init)
        # The wrapper reads these when it traces its train step.
        wrapper._INLINE_UPDATES = old
        masks.SORT_MAX_SIZE = 0 if old else sort_max
        try:
            schedule = pruning.PolynomialDecay(**{**SCHEDULE, "frequency": frequency})
            model = compile_model(keras, pruning.prune_low_magnitude(model, pruning_schedule=schedule))
            timed = Timed(model, x, y, pruning.UpdatePruningStep())
            timed.run(1)  # trace now, under the chosen path
        finally:
            wrapper._INLINE_UPDATES = False
            masks.SORT_MAX_SIZE = sort_max
        return timed

    variants = {"dense": Timed(compile_model(keras, dense), x, y), "tfopt": pruned()}
    if with_old:
        variants["tfopt-old"] = pruned(old=True)
    variants["tfopt-fixed"] = pruned(frequency=100000)
    times = interleave(variants, STEPS[size], rounds)
    # Exactness check: one more step of the shipped path, its new masks
    # compared element by element with a numpy reference (the k smallest of
    # |weight * mask| by value, then position, k by tfmot's rounding).
    wrappers = pruning.api.pruning_wrappers(variants["tfopt"].model)
    before = [(w.pruning_step.numpy(), [(v.numpy(), m.numpy()) for v, m in zip(w.prunable_weights, w.masks)])
              for w in wrappers]
    variants["tfopt"].run(1)
    k_ok = True
    for w, (step, pairs) in zip(wrappers, before):
        _, sparsity = w.pruning_schedule(int(step))
        for mask, (weight, old_mask) in zip(w.masks, pairs):
            flat = np.abs(weight * old_mask).reshape(-1)
            n = flat.size
            k = n - int(np.round(np.float32(n) * (np.float32(1) - np.float32(sparsity))))
            expect = np.ones(n, "float32")
            expect[np.argsort(flat, kind="stable")[:k]] = 0.0
            k_ok &= bool(np.array_equal(mask.numpy().reshape(-1), expect))
    result = summarize(times)
    result["masks_exact_vs_numpy"] = bool(k_ok)
    return result


# --------------------------------------------------------------------------- #
# Many layers: trace/optimise time and per-layer graph size
# --------------------------------------------------------------------------- #

MANY_BATCH = 32


def build_stack(keras, layers):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 8))
    x = inputs
    for _ in range(layers):
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


def run_many_layers(layers, rounds):
    import keras
    import tensorflow as tf

    from tfopt import pruning
    from tfopt.pruning import masks
    from tfopt.pruning import wrapper

    sort_max = masks.SORT_MAX_SIZE
    rng = np.random.default_rng(0)
    x = rng.normal(size=(MANY_BATCH, 8, 8, 8)).astype("float32")
    y = rng.integers(0, 10, size=MANY_BATCH).astype("int32")
    schedule = dict(SCHEDULE)

    def make(variant, n):
        model = build_stack(keras, n)
        callback = None
        if variant != "dense":
            model = pruning.prune_low_magnitude(
                model, pruning_schedule=pruning.PolynomialDecay(**schedule))
            callback = pruning.UpdatePruningStep()
        return compile_model(keras, model), callback

    def select(variant):
        # Read by the wrappers when they trace: main's code traced the update
        # inline in every wrapper and used the radix select at every size.
        wrapper._INLINE_UPDATES = variant == "tfopt-inline"
        masks.SORT_MAX_SIZE = 0 if variant in ("tfopt-inline", "tfopt-radix") else sort_max

    def graph_ops(variant):
        """(ops in train_step's graph, ops in its function library), 10 layers."""
        select(variant)
        try:
            model, callback = make(variant, 10)
            if callback is not None:
                callback.set_model(model)
                callback.on_train_begin()
            step = tf.function(lambda a, b: model.train_step((a, b)))
            graph = step.get_concrete_function(
                tf.TensorSpec(x.shape), tf.TensorSpec(y.shape, tf.int32)).graph
            library = graph.as_graph_def().library.function
            return len(graph.get_operations()), sum(len(f.node_def) for f in library)
        finally:
            select("tfopt")

    out = {"layers": layers, "batch": MANY_BATCH, "graph_ops_10_layers": {},
           "first_step_s": {}}
    variants = {}
    for variant in ("dense", "tfopt-inline", "tfopt-radix", "tfopt"):
        out["graph_ops_10_layers"][variant] = graph_ops(variant)
        select(variant)
        try:
            model, callback = make(variant, layers)
            timed = Timed(model, x, y, callback)
            start = time.perf_counter()
            timed.run(1)  # trace, optimise the graph, one step
            out["first_step_s"][variant] = time.perf_counter() - start
        finally:
            select("tfopt")
        variants[variant] = timed
        print(f"many layers: {variant} first step {out['first_step_s'][variant]:.1f} s", flush=True)
    # The first first-step of a process also pays one-time start-up costs:
    # time a fresh dense model's first step again, last.
    model, _ = make("dense", layers)
    start = time.perf_counter()
    Timed(model, x, y).run(1)
    out["first_step_s"]["dense-again"] = time.perf_counter() - start
    del model
    out.update(summarize(interleave(variants, 3, rounds, warmup=2)))
    return out


# --------------------------------------------------------------------------- #
# tfmot (tf_keras, subprocess)
# --------------------------------------------------------------------------- #


def tfmot_worker(size, rounds):
    import tf_keras as keras
    import tensorflow_model_optimization as tfmot

    api = tfmot.sparsity.keras
    widths = SIZES[size]
    x, y = data(widths)
    keras.utils.set_random_seed(0)
    dense = build(keras, widths)
    pruned = build(keras, widths)
    pruned.set_weights(dense.get_weights())
    pruned = api.prune_low_magnitude(pruned, pruning_schedule=api.PolynomialDecay(**SCHEDULE))
    variants = {"dense": Timed(compile_model(keras, dense), x, y),
                "tfmot": Timed(compile_model(keras, pruned), x, y, api.UpdatePruningStep())}
    return summarize(interleave(variants, STEPS[size], rounds))


def run_tfmot(size, rounds):
    result = subprocess.run(
        [sys.executable, __file__, "--tfmot-worker", "--sizes", size, "--rounds", str(rounds)],
        capture_output=True, text=True, timeout=3600,
    )
    if result.returncode != 0:
        return {"error": result.stderr[-2000:]}
    return json.loads(result.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- #
# Report
# --------------------------------------------------------------------------- #


def machine():
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}


def write_report(report, out):
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out + ".json", "w") as f:
        json.dump(report, f, indent=1)
    lines = [
        "# Pruning overhead by model size (issue 14, item 6)",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores; "
        f"{report['date']}; load average before/after: {report['load_before']} / "
        f"{report['load_after']} (a shared machine: other jobs ran; ratios are "
        "paired per round, absolute ms are not comparable across rows).  ",
        f"Versions: {report['versions']}",
        "",
    ]
    if report["rows"]:
        lines += [
            "Mask update every step (`PolynomialDecay(0, 0.8, 0, 100000, frequency=1)`), "
            f"batch {BATCH}, Adam, MLPs on random data; ratio = pruned / dense "
            "`train_on_batch` time per step, median over interleaved rounds "
            "[min-max across rounds].",
            "",
            "| prunable weights | MLP | dense ms/step | tfopt | tfopt before (main) "
            "| tfopt, no mask update | tfmot | masks exact (last step vs numpy) |",
            "|---|---|---|---|---|---|---|---|",
        ]

    def cell(result, name):
        if not result or "ratio" not in result or name not in result["ratio"]:
            return "-" if not result or "error" not in result else "error"
        r = result["ratio"][name]
        return f"{r['median']:.2f}x [{r['min']:.2f}-{r['max']:.2f}]"

    for size, row in report["rows"].items():
        mine = row["tfopt"]
        lines.append(
            f"| {row['prunable']:,} ({size}) | {'-'.join(map(str, SIZES[size]))} | "
            f"{mine['ms_per_step_median']['dense']:.1f} | {cell(mine, 'tfopt')} | "
            f"{cell(mine, 'tfopt-old')} | {cell(mine, 'tfopt-fixed')} | "
            f"{cell(row.get('tfmot'), 'tfmot')} | "
            f"{mine['masks_exact_vs_numpy']} |"
        )
    many = report.get("many_layers")
    if many:
        lines += [
            "",
            f"## Many layers: a stack of {many['layers']} Conv2D(8, 3) layers "
            f"(8x8x8 inputs, batch {many['batch']})",
            "",
            "Graph ops of `train_step` on a 10-layer copy (the train-step graph + its "
            "function library, where cond branches and called functions live; "
            "dense for comparison); "
            "first `train_on_batch` (trace + graph optimisation + one step, seconds, "
            "measured once, load-dependent); steady step ratio vs dense (median over "
            "interleaved rounds [min-max]).",
            "",
            "| variant | graph + library ops, 10 layers | first step s | steady ms/step | ratio vs dense |",
            "|---|---|---|---|---|",
        ]
        labels = {"dense": "dense",
                  "tfopt-inline": "tfopt before (main: update inline in every wrapper, radix select)",
                  "tfopt-radix": "tfopt, shared non-inlined update, radix select",
                  "tfopt": "tfopt (shared update, one sort for weights <= 1024 elements)"}
        for name, label in labels.items():
            graph, library = many["graph_ops_10_layers"][name]
            per = f"{graph} + {library}"
            first = f"{many['first_step_s'][name]:.1f}"
            if name == "dense" and "dense-again" in many["first_step_s"]:
                first += f" (again, last: {many['first_step_s']['dense-again']:.1f})"
            lines.append(
                f"| {label} | {per} | {first} | "
                f"{many['ms_per_step_median'][name]:.1f} | "
                f"{'-' if name == 'dense' else cell(many, name)} |")
    with open(out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/pruning_overhead")
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--no-tfmot", action="store_true")
    parser.add_argument("--no-old", action="store_true", help="skip main's path (update inline in every wrapper)")
    parser.add_argument("--many-layers", type=int, default=0, metavar="N",
                        help="also time a stack of N small pruned convs (first step, steady)")
    parser.add_argument("--tfmot-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [] if args.sizes == "none" else args.sizes.split(",")
    for size in sizes:
        if size not in SIZES:
            parser.error(f"--sizes: {size!r} is not one of {list(SIZES)}")
    if args.tfmot_worker:
        print(json.dumps(tfmot_worker(sizes[0], args.rounds)))
        return
    import keras
    import tensorflow as tf

    report = {
        "command": "python " + " ".join(sys.argv),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_before": [round(v, 2) for v in os.getloadavg()],
        "versions": f"TF {tf.__version__}, Keras {keras.__version__}",
        "rows": {},
    }
    for size in sizes:
        row = {"prunable": kernel_count(SIZES[size])}
        row["tfopt"] = run_tfopt(size, args.rounds, not args.no_old)
        if not args.no_tfmot:
            row["tfmot"] = run_tfmot(size, args.rounds)
        report["rows"][size] = row
        print(size, json.dumps({k: v.get("ratio") for k, v in row.items() if isinstance(v, dict)}),
              flush=True)
    if args.many_layers:
        report["many_layers"] = run_many_layers(args.many_layers, args.rounds)
    report["load_after"] = [round(v, 2) for v in os.getloadavg()]
    write_report(report, args.out)


if __name__ == "__main__":
    main()
