"""``keras-dehaze dehaze --precision int8|float`` and ``--accelerator``: a preset that ships an
int8 ``.tflite`` (``int8_tflite`` in its JSON record) runs it by default through LiteRT, without
importing TensorFlow; ``--precision float`` runs the Keras network."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from keras_dehaze import pretrained
from keras_dehaze.cli import main
from keras_dehaze.data import read_image, write_image
from tests import REPO as ROOT

BUNDLED_TFLITE = os.path.join(ROOT, "keras_dehaze", "weights", "aecrnet_default_int8.tflite")
ENV = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _photo(path, size=(40, 52), seed=0):
    rng = np.random.default_rng(seed)
    write_image(str(path), 0.6 * rng.uniform(0, 1, (*size, 3)) + 0.35)
    return str(path)


NO_TF_SCRIPT = textwrap.dedent(
    """
    import sys
    from keras_dehaze.cli import main
    image, out = sys.argv[1:3]
    codes = [main(["dehaze", image, "-o", out + "/auto", "--model", "aecrnet", "--quiet"]),
             main(["dehaze", image, "-o", out + "/int8", "--model", "aecrnet_default", "--precision", "int8",
                   "--quiet"])]
    print("CODES", codes)
    print("TENSORFLOW", "tensorflow" in sys.modules, "tf_keras" in sys.modules)
    """
)


def test_int8_preset_is_the_default_and_imports_no_tensorflow(tmp_path):
    image = _photo(tmp_path / "a.png", size=(60, 76))
    script = tmp_path / "no_tf.py"
    script.write_text(NO_TF_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), image, str(tmp_path / "out")], capture_output=True,
                          text=True, env=ENV, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "CODES [0, 0]" in proc.stdout and "TENSORFLOW False False" in proc.stdout, proc.stdout + proc.stderr
    from keras_dehaze.inference import load_dehazer

    want = load_dehazer(BUNDLED_TFLITE, threads=1)(read_image(image))  # the shipped int8 file itself
    for sub in ("auto", "int8"):
        got = read_image(str(tmp_path / "out" / sub / "a_dehazed.png"))
        assert got.shape == (60, 76, 3) and np.abs(got - want).max() <= 0.5 / 255 + 1e-6


def test_precision_float_runs_keras_and_errors_are_clear(tmp_path, monkeypatch, capsys):
    import tensorflow as tf

    from keras_dehaze.inference import KerasDehazer, load_dehazer
    from keras_dehaze.models import AECRNet

    weights = tmp_path / "weights"
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", str(weights))
    pretrained.export_pretrained(AECRNet(filters=4), "tiny", "aecrnet", {"filters": 4}, {})
    pretrained.export_pretrained(AECRNet(filters=4), "nofile", "aecrnet", {"filters": 4}, {})
    # The preset's "int8" file: any .tflite runs (a float 32x32 conv net keeps the test fast).
    x = tf.keras.Input((32, 32, 3), batch_size=1)
    net = tf.keras.Model(x, tf.keras.layers.Conv2D(3, 3, padding="same", activation="sigmoid")(x))
    (weights / "tiny_int8.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(net).convert())
    record = json.loads((weights / "tiny.json").read_text())
    (weights / "tiny.json").write_text(json.dumps({**record, "int8_tflite": "tiny_int8.tflite"}))
    image = _photo(tmp_path / "a.png")
    hazy = read_image(image)

    assert main(["dehaze", image, "-o", str(tmp_path / "auto"), "--model", "tiny", "--quiet"]) == 0
    want_int8 = load_dehazer(str(weights / "tiny_int8.tflite"), threads=1)(hazy)
    assert np.abs(read_image(str(tmp_path / "auto" / "a_dehazed.png")) - want_int8).max() <= 0.5 / 255 + 1e-6

    assert main(["dehaze", image, "-o", str(tmp_path / "float"), "--model", "tiny", "--precision", "float",
                 "--quiet"]) == 0
    want_float = KerasDehazer(pretrained.load_pretrained("tiny"))(hazy)
    got = read_image(str(tmp_path / "float" / "a_dehazed.png"))
    assert np.abs(got - want_float).max() <= 0.5 / 255 + 1e-5
    assert np.abs(want_float - want_int8).max() > 0.01  # really the other network
    assert main(["dehaze", image, "-o", str(tmp_path / "n"), "--model", "nofile", "--quiet"]) == 0  # float
    capsys.readouterr()

    assert main(["dehaze", image, "-o", str(tmp_path / "x"), "--model", "nofile", "--precision", "int8"]) == 2
    assert "ships no int8 .tflite" in capsys.readouterr().err
    assert main(["dehaze", image, "-o", str(tmp_path / "x"), "--model", str(weights / "tiny_int8.tflite"),
                 "--precision", "float"]) == 2
    assert "--precision applies to presets" in capsys.readouterr().err
    assert main(["dehaze", image, "-o", str(tmp_path / "x"), "--model", "tiny", "--precision", "float",
                 "--accelerator", "gpu"]) == 2
    assert "--accelerator gpu runs .tflite models" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "x")

