"""Before/after wall and CPU time of the tests branch trim5 changed.

    python benchmarks/test_time_compare.py BEFORE_DIR AFTER_DIR OUT.json [--reverse] [GROUP ...]

BEFORE_DIR is a checkout of the commit before the change (e.g.
`git archive 789233b | tar -x -C /tmp/before`), AFTER_DIR one after it.
Each group runs the before tests then the after tests (`--reverse`: after
first), back to back, each in a fresh `pytest -n 0` process with
`PYTHONPATH` set to its checkout. CPU time counts pytest and the processes
it starts. Results: one JSON line per run on stdout, all of them in OUT.json.
"""
import json
import os
import re
import resource
import subprocess
import sys
import time

args = sys.argv[1:]
reverse = "--reverse" in args
args = [a for a in args if a != "--reverse"]
BEFORE, AFTER, OUT = (os.path.abspath(a) for a in args[:3])
T = "tests/tuning/"
GROUPS = [
    ("distributed", [T + "test_distributed.py"], [T + "test_distributed.py"]),
    ("kill/resume", [T + "test_fault_tolerance.py::test_killed_search_resumes_without_losing_or_redoing_trials"],
                    [T + "test_fault_tolerance.py::test_killed_search_resumes_without_losing_or_redoing_trials",
                     T + "test_fault_tolerance.py::test_a_trial_ended_just_before_a_kill_is_not_run_again"]),
    ("cli tune", [T + "test_cli_tune.py::test_tune_digits_writes_the_report",
                  "tests/test_cli.py::test_tune_resumes_unless_overwrite"],
                 [T + "test_cli_tune.py::test_tune_digits_writes_the_report_and_resumes"]),
    ("qat zoo + save/load", ["tests/quantization/test_qat.py::test_every_supported_layer_trains_and_exports_to_int8",
                             "tests/quantization/test_qat.py::test_save_load_round_trip_keeps_ranges"],
                            ["tests/quantization/test_qat.py::test_every_supported_layer_trains_exports_to_int8_and_reloads"]),
    ("coverage save/load", ["tests/quantization/test_coverage.py::test_new_qat_layers_save_and_load",
                            "tests/quantization/test_coverage.py::test_pattern_quantizes_exports_and_runs_int8[transformer]",
                            "tests/quantization/test_coverage.py::test_pattern_quantizes_exports_and_runs_int8[preactivation_bn]"],
                           ["tests/quantization/test_coverage.py::test_new_qat_layers_save_and_load",
                            "tests/quantization/test_coverage.py::test_pattern_quantizes_exports_and_runs_int8[transformer]",
                            "tests/quantization/test_coverage.py::test_pattern_quantizes_exports_and_runs_int8[preactivation_bn]"]),
]
only = args[3:]
order = ("after", "before") if reverse else ("before", "after")
results = []
for name, before, after in GROUPS:
    if only and name not in only:
        continue
    for label in order:
        root, ids = (BEFORE, before) if label == "before" else (AFTER, after)
        load = open("/proc/loadavg").read().split()[0]
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "pytest", "-n", "0", "-q", "-p", "no:cacheprovider",
                               "--durations=0", *ids], cwd=root, env={**os.environ, "PYTHONPATH": root},
                              capture_output=True, text=True)
        wall = time.monotonic() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        calls = {m.group(3) + " (" + m.group(2) + ")": float(m.group(1)) for m in re.finditer(r"([\d.]+)s (call|setup)\s+(\S+)", done.stdout)}
        tail = done.stdout.strip().splitlines()[-1]
        row = dict(group=name, version=label, load1=float(load), wall_s=round(wall, 1), cpu_s=round(cpu, 1),
                   tests_s=round(sum(calls.values()), 1), calls=calls, outcome=tail)
        results.append(row)
        print(json.dumps(row), flush=True)
with open(OUT, "w") as handle:
    json.dump(results, handle, indent=1)
