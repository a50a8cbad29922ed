"""Child-process entry of an isolated TFLite conversion.

`python -m tfopt.export._isolated JOB.json` converts the SavedModel named in
the job with `tfopt.export.tflite.convert_saved_model` and writes the
flatbuffer to the job's `out` path, or the converter's error text to its
`error` path. A crash of the converter kills only this process; the parent
(`to_tflite(..., isolate=True)`) reports it as a `ConversionError`.
"""

import json
import sys


def main(job_path):
    import numpy as np

    from tfopt.export.tflite import convert_saved_model

    with open(job_path) as handle:
        job = json.load(handle)
    data = None
    if job.get("representative", "").endswith(".npz"):  # one array per input
        with np.load(job["representative"]) as arrays:
            data = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
    elif job.get("representative"):
        data = np.load(job["representative"])
    try:
        content = convert_saved_model(job, data)
    except Exception as error:  # reported to the parent as text
        with open(job["error"], "w") as handle:
            handle.write(str(error))
        return 1
    with open(job["out"], "wb") as handle:
        handle.write(content)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
