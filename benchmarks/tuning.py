"""The compression-search target run: digits, 10-minute budget, 2 cores.

    python benchmarks/tuning.py [--max-seconds 540] [--max-trials 60] [--tuner random]
        [--max-accuracy-drop 0.01] [--out DIR]

Runs `tfopt.tuning.examples.run_digits` (the search behind `tfopt tune
--example digits`) with a time budget and writes benchmarks/results/tuning/:
trials.csv, trials.md, results.json (command, machine, date, summary) and
pareto.png. Unconstrained by default, so the front spans the whole
accuracy/size/latency trade-off; with --max-accuracy-drop 0.01 only trials
within a point of the baseline are feasible (and on the front).
Target (issue 7): an int8 TFLite file <= 0.25x the float baseline's bytes
with an accuracy drop <= 1 point, and a Pareto front of >= 3 trials, within
10 minutes of wall time (baseline included).
"""

import argparse
import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "tuning"))
    parser.add_argument("--project-dir", default=None,
                        help="KerasTuner project (default: a temporary directory)")
    parser.add_argument("--max-seconds", type=float, default=540.0,
                        help="start no trial after this long (the last one then finishes "
                             "inside the 10 minutes)")
    parser.add_argument("--max-trials", type=int, default=60)
    parser.add_argument("--tuner", default="random")
    parser.add_argument("--max-accuracy-drop", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from tfopt.tuning import examples

    command = "python benchmarks/tuning.py " + " ".join(sys.argv[1:] if argv is None else argv)
    project = args.project_dir or os.path.join(tempfile.mkdtemp(prefix="tfopt-tuning-"), "search")
    result = examples.run_digits(
        args.out, max_trials=args.max_trials, tuner=args.tuner,
        max_search_seconds=args.max_seconds, max_accuracy_drop=args.max_accuracy_drop,
        seed=args.seed, command=command.strip(), project_dir=project)
    summary = result["summary"]
    print(open(result["paths"]["markdown"]).read())
    print(json.dumps({k: summary[k] for k in ("wall_seconds", "trials", "measured", "failed",
                                              "target_met")}, indent=2))
    return 0 if summary["target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
