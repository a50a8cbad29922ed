"""`import tfopt` is lazy, yet registers tfopt's layers whenever Keras loads."""

import subprocess
import sys

import pytest

CASES = {
    # TensorFlow looks Keras up (find_spec) before importing it.
    "tensorflow first": "import tfopt, tensorflow, keras",
    "a bare look-up": "import tfopt, importlib.util; importlib.util.find_spec('keras'); import keras",
    "keras before tfopt": "import keras, tfopt",
}


@pytest.mark.parametrize("imports", CASES.values(), ids=CASES.keys())
def test_layers_are_registered_in_any_import_order(imports):
    code = (f"{imports}\n"
            "for name in ('tfopt>PruneLowMagnitude', 'tfopt>QuantizeWrapper', 'tfopt>ClusterWeights'):\n"
            "    assert keras.saving.get_registered_object(name) is not None, name\n"
            "import tfopt\n"
            "assert tfopt.zoo.names()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
