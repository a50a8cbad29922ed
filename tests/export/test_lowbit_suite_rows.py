"""The below-int8 suite rows run end to end through the benchmark harness."""

import keras

from tfopt.bench import harness
from tfopt.bench import suites
from tfopt.data import load_digits

FAST = harness.Settings(warmup=2, runs=20, min_seconds=0.0, device="cpu")


def test_lowbit_rows(tmp_path):
    def build():
        keras.utils.set_random_seed(0)
        (x, y), (x_test, y_test) = load_digits(8)
        model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                  keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, epochs=3, verbose=0)
        return model, (x, y, x_test, y_test)

    case = harness.Case("tiny", build, [
        suites.float_recipe(), suites.lowbit_recipe("int4_blockwise"),
        suites.cluster_recipe(8, epochs=1), suites.mixed_recipe(0.75), suites.mixed_recipe(0.01)])
    rows = {row["recipe"]: row for row in harness.run_case(case, FAST, str(tmp_path))}
    for name in ("lowbit-int4_blockwise-b32", "cluster-8", "mixed-0.75x-int8"):
        assert rows[name]["status"] == "ok", rows[name]
        assert rows[name]["top1_agreement"] >= 0.9
        assert rows[name]["cpu_p50_ms"] > 0
    assert rows["lowbit-int4_blockwise-b32"]["bytes_vs_float"] < 0.4
    assert rows["cluster-8"]["max_distinct_values"] <= 8
    assert rows["cluster-8"]["gzip_vs_float"] < 0.5
    assert rows["mixed-0.75x-int8"]["size_bytes"] <= rows["mixed-0.75x-int8"]["budget_bytes"]
    # An impossible budget is a failed row with the reason, not a crash.
    assert rows["mixed-0.01x-int8"]["status"] == "failed"
    assert "below the smallest file" in rows["mixed-0.01x-int8"]["reason"]
