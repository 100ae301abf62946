"""PyDNet++ (mobilePydnet) monocular depth from its TFLite file, run by LiteRT or replayed in TF.

Turns folders of clean photos without depth sensors into haze-synthesis material: the relative
depth of each photo feeds ``I = J t + A (1 - t)``, ``t = exp(-beta d)`` (see
``training/prepare_clean_depth.py --pydnet``).

The file: ``pydnet_plus_plus.tflite`` (FilippoAleotti/mobilePydnet @ 0fc30306,
``Android/app/src/main/assets/optimized_pydnet++.tflite``, Apache-2.0). It is not shipped; it is
looked up at the path given, else ``$KERAS_DEHAZE_PYDNET``, else
``~/.keras/models/pydnet_plus_plus.tflite``. Input ``im0``: 1 x 448 x 640 x 3 float32 RGB in
[0, 1] (the Android app divides 8-bit RGB by 255); three outputs at 448 x 640, computed at 1/2,
1/4 and 1/8 of the input resolution and upsampled bilinearly (``PSD/resize_images``,
``_1``, ``_2``; the app's HALF, QUARTER and "HEIGHT" scales). The finest (``half``) is used.

Orientation: the outputs are described as inverse depth, but on the indoor RGB-D frames of the
shared data the raw ``half`` output correlates POSITIVELY with sensor depth (Spearman +0.38 to
+0.63 on the 6 frames, measured pixels only, ``python -m keras_dehaze.depth.evaluate``), and the
app's colour map gives low values the "near" colour. So the raw output is read as depth (larger =
farther) by default (``output="depth"``); ``output="disparity"`` flips it. Its quality is weak:
-0.41 to +0.03 on the 3 Middlebury scenes (mean over all 9 frames +0.31, DCP prior +0.35, and
a plain "farther towards the top row" reference +0.62); the 1/4 and 1/8 outputs do the same.
Check it on your own photos before relying on it.

Two runners: `PyDNetTFLite` / `PyDNetDepth` run the file with LiteRT (no TensorFlow needed; not
differentiable: depth for haze synthesis and the d0 of rehazy generation), and `PyDNetGraphDepth`
replays the same file with TensorFlow ops (`keras_dehaze.depth.tflite_graph`), differentiable, for
the depth-consistency loss of the Rehazy trainer. The file stores 35 of its 39 convolution
filters as int8 (dynamic-range quantization); LiteRT also rounds each of those convolutions'
input activations to int8 on the fly, the replay keeps them float. That rounding is not small
here (activations reach ~4600): on the 6 shared RGB-D frames the raw ``half`` outputs of the
replay and of LiteRT's default (XNNPACK) path differ by mean |diff| 0.30-0.54, max 2.3-9.0, on
outputs spanning ~5-240 (Spearman 0.97-0.98), LESS than LiteRT's own two CPU paths differ from
each other (XNNPACK vs its builtin kernels: mean 0.47-1.03, max 9.6-20.0, Spearman 0.87-0.96).
Agreement with sensor depth is about the same (Spearman +0.36..+0.63 vs +0.39..+0.62).

Example:
    >>> net = PyDNetTFLite("/weights/pydnet_plus_plus.tflite")  # doctest: +SKIP
    >>> d = net.depth(read_image("photo.jpg"))                  # HxW float32 in [0, 1]
    >>> d = PyDNetGraphDepth("/weights/pydnet_plus_plus.tflite")(batch)  # differentiable
"""

import os

import cv2
import numpy as np

from keras_dehaze.depth.base import DepthEstimator

PYDNET_FILE = "pydnet_plus_plus.tflite"
PYDNET_ENV = "KERAS_DEHAZE_PYDNET"
PYDNET_SOURCE = "FilippoAleotti/mobilePydnet (Apache-2.0), Android/app/src/main/assets/optimized_pydnet++.tflite"
PYDNET_INPUT_HW = (448, 640)
PYDNET_OUTPUTS = {
    "half": "PSD/resize_images/ResizeBilinear",
    "quarter": "PSD/resize_images_1/ResizeBilinear",
    "eighth": "PSD/resize_images_2/ResizeBilinear",
}
OUTPUT_KINDS = ("depth", "disparity")


class PyDNetError(ValueError):
    """The PyDNet++ file is missing or is not the PyDNet++ TFLite model.

    (A ValueError like `keras_dehaze.model_files.ModelFileError`; not a subclass of it, because
    that module imports TensorFlow.)
    """


def _how_to_give_file():
    return (f"Give the path of {PYDNET_FILE} ({PYDNET_SOURCE}) (rehazy.depth: <path> or 'pydnet'; "
            f"prepare_clean_depth.py --pydnet <path>), or set {PYDNET_ENV}=<path>, or copy it to "
            f"~/.keras/models/{PYDNET_FILE}.")


def resolve_pydnet(path=None):
    """Path of the PyDNet++ file: `path`, else ``$KERAS_DEHAZE_PYDNET``, else ~/.keras/models/.

    Raises:
        PyDNetError: not found (the message says where it looked and how to give it).
    """
    if path not in (None, "", "pydnet"):
        path = os.path.expanduser(os.fspath(path))
        if not os.path.isfile(path):
            raise PyDNetError(f"PyDNet++ file not found: {path!r}. " + _how_to_give_file())
        return path
    env = os.environ.get(PYDNET_ENV, "")
    if env:
        if not os.path.isfile(os.path.expanduser(env)):
            raise PyDNetError(f"{PYDNET_ENV}={env!r} does not name an existing file. " + _how_to_give_file())
        return os.path.expanduser(env)
    default = os.path.join(os.path.expanduser("~"), ".keras", "models", PYDNET_FILE)
    if os.path.isfile(default):
        return default
    raise PyDNetError(f"PyDNet++ depth model missing: no path given, {PYDNET_ENV} not set, and not at "
                      f"{default}. " + _how_to_give_file())


def _interpreter(path, threads=None):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as err:  # pragma: no cover - ai-edge-litert is a project dependency
        raise PyDNetError("PyDNet++ needs the LiteRT interpreter: pip install ai-edge-litert") from err
    try:
        interp = Interpreter(model_path=path, num_threads=threads)
        interp.allocate_tensors()
    except Exception as err:
        raise PyDNetError(f"could not load {path!r} as a TFLite model ({type(err).__name__}: {err}). "
                          + _how_to_give_file()) from err
    return interp


def is_pydnet_file(path):
    """True when `path` is a TFLite file with the PyDNet++ input and output tensors."""
    if not str(path).lower().endswith(".tflite") or not os.path.isfile(path):
        return False
    try:
        interp = _interpreter(path, threads=1)
    except PyDNetError:
        return False
    names = {d["name"] for d in interp.get_output_details()}
    shape = tuple(interp.get_input_details()[0]["shape"])
    return set(PYDNET_OUTPUTS.values()) <= names and shape == (1, *PYDNET_INPUT_HW, 3)


def normalize_relative(values, low=1.0, high=99.0):
    """(v - p_low) / (p_high - p_low), clipped to [0, 1]: robust to a few outlier pixels."""
    lo, hi = np.percentile(values, [low, high])
    return np.clip((values - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0).astype(np.float32)


def _check_choices(scale, output):
    if scale not in PYDNET_OUTPUTS:
        raise ValueError(f"scale must be one of {sorted(PYDNET_OUTPUTS)}, got {scale!r}")
    if output not in OUTPUT_KINDS:
        raise ValueError(f"output must be one of {OUTPUT_KINDS}, got {output!r}")


def _check_tensors(path, inputs, output_names):
    """PyDNetError unless `inputs` ([(shape, dtype name)]) and `output_names` are PyDNet++'s."""
    problems = []
    if inputs != [((1, *PYDNET_INPUT_HW, 3), "float32")]:
        problems.append(f"inputs {inputs}, want one float32 (1, {PYDNET_INPUT_HW[0]}, {PYDNET_INPUT_HW[1]}, 3)")
    missing = [n for n in PYDNET_OUTPUTS.values() if n not in output_names]
    if missing:
        problems.append(f"outputs {sorted(output_names)}, missing {missing}")
    if problems:
        raise PyDNetError(f"{path!r} is not the PyDNet++ TFLite model: " + "; ".join(problems)
                          + ". " + _how_to_give_file())


class PyDNetTFLite:
    """PyDNet++ run by the LiteRT interpreter on numpy images (no TensorFlow needed).

    Args:
        path: the .tflite file; None: ``$KERAS_DEHAZE_PYDNET`` or ~/.keras/models/.
        scale: "half" (finest, default), "quarter" or "eighth" output.
        output: "depth" (default: the raw output grows with distance, as measured on the
            RGB-D frames) or "disparity" (the raw output is inverse depth: flipped).
        threads: LiteRT CPU threads (None: its default).

    Raises:
        PyDNetError: missing file, or a TFLite model that is not PyDNet++ (input 1x448x640x3
            float32 and the three ``PSD/resize_images*`` outputs are checked).
    """

    def __init__(self, path=None, scale="half", output="depth", threads=None):
        _check_choices(scale, output)
        self.path = resolve_pydnet(path)
        self.scale, self.output = scale, output
        self._interp = _interpreter(self.path, threads)
        inputs = self._interp.get_input_details()
        outputs = {d["name"]: d for d in self._interp.get_output_details()}
        _check_tensors(self.path, [(tuple(int(v) for v in d["shape"]), d["dtype"].__name__) for d in inputs], outputs)
        self._in = inputs[0]["index"]
        self._out = outputs[PYDNET_OUTPUTS[scale]]["index"]

    def raw(self, image):
        """The raw output for one HxWx3 RGB image in [0, 1], resized back to HxW (float32)."""
        image = np.asarray(image, np.float32)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"PyDNet++ takes one HxWx3 RGB image, got shape {image.shape}")
        h, w = image.shape[:2]
        th, tw = PYDNET_INPUT_HW
        shrink = h * w > th * tw
        x = cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        self._interp.set_tensor(self._in, np.ascontiguousarray(np.clip(x, 0.0, 1.0)[None]))
        self._interp.invoke()
        y = self._interp.get_tensor(self._out)[0, ..., 0].astype(np.float32)
        return cv2.resize(y, (w, h), interpolation=cv2.INTER_LINEAR)

    def depth(self, image):
        """Relative depth in [0, 1] (HxW float32, larger = farther) of one RGB image in [0, 1].

        The raw output, flipped for ``output="disparity"``, normalised between its 1st and 99th
        percentiles (the output is relative: its offset and scale carry no meaning).
        """
        y = self.raw(image)
        d = normalize_relative(y)
        return 1.0 - d if self.output == "disparity" else d

    def describe(self):
        return (f"PyDNet++ TFLite {self.path} ({self.scale} output read as {self.output}, "
                f"{PYDNET_INPUT_HW[0]}x{PYDNET_INPUT_HW[1]} input); NOT differentiable")


class PyDNetDepth(DepthEstimator):
    """`DepthEstimator` interface ([B, H, W, 3] in [0, 1] -> [B, H, W, 1] in [0, 1]) for PyDNet++.

    Each image goes through `PyDNetTFLite.depth` inside ``tf.numpy_function``: usable in
    tf.data and in a training step, but NOT differentiable (stop-gradient), so it gives the d0
    of rehazy generation and cached clean-photo depth, never the depth-consistency loss (that
    is `PyDNetGraphDepth`).

    Args:
        path, scale, output, threads: see `PyDNetTFLite`.

    Example:
        >>> d0 = PyDNetDepth("/weights/pydnet_plus_plus.tflite")(hazy_batch)  # doctest: +SKIP
    """

    name = "pydnet++"
    differentiable = False
    haze_invariant = True  # a learned scene depth, not a haze measure
    normalize = "none"  # PyDNetTFLite.depth is already in [0, 1]

    def __init__(self, path=None, scale="half", output="depth", threads=None):
        self.runner = PyDNetTFLite(path, scale=scale, output=output, threads=threads)

    def predict(self, images):
        from keras_dehaze.backend import tf

        def one(image):
            d = tf.numpy_function(self.runner.depth, [image], tf.float32)
            d.set_shape(image.shape[:2])
            return d

        return tf.stop_gradient(tf.map_fn(one, images, fn_output_signature=tf.float32))[..., None]

    def describe(self):
        return self.runner.describe()


class PyDNetGraphDepth(DepthEstimator):
    """PyDNet++ replayed with TensorFlow ops: a DIFFERENTIABLE `DepthEstimator` (needs TensorFlow).

    The batch is resized to 448 x 640 (bilinear, antialiased when shrinking, as the LiteRT
    runner's INTER_AREA), run through the replayed file (`keras_dehaze.depth.tflite_graph`), and
    the chosen output is resized back (bilinear) and normalised per image between its 1st and
    99th percentiles like `PyDNetTFLite.depth` (min-max would squash the map: a few pixels of
    the raw output are ~10x the rest). Float activations: see the module docstring for how
    far this is from LiteRT's int8-rounded ones.

    Args:
        path, scale, output: see `PyDNetTFLite` ("disparity" flips the sign before normalising).

    Raises:
        PyDNetError: missing file or not the PyDNet++ model (checked as `PyDNetTFLite` does).

    Example:
        >>> depth = PyDNetGraphDepth("/weights/pydnet_plus_plus.tflite")(images)  # doctest: +SKIP
    """

    name = "pydnet++ (TF replay)"
    differentiable = True
    haze_invariant = True  # a learned scene depth, not a haze measure
    normalize = "percentile"

    def __init__(self, path=None, scale="half", output="depth"):
        from keras_dehaze.depth.tflite_graph import TFLiteGraph
        from keras_dehaze.edge.flatbuffer import load_model_info

        _check_choices(scale, output)
        self.path = resolve_pydnet(path)
        self.scale, self.output = scale, output
        try:
            info = load_model_info(self.path)
        except Exception as err:
            raise PyDNetError(f"could not load {self.path!r} as a TFLite model ({type(err).__name__}: {err}). "
                              + _how_to_give_file()) from err
        _check_tensors(self.path, [(t.shape, t.dtype) for t in info.inputs], [t.name for t in info.outputs])
        self.graph = TFLiteGraph(self.path)
        self._out = self.graph.output_names.index(PYDNET_OUTPUTS[scale])

    def predict(self, images):
        from keras_dehaze.backend import tf

        x = tf.image.resize(images, PYDNET_INPUT_HW, method="bilinear", antialias=True)
        y = self.graph(tf.clip_by_value(x, 0.0, 1.0))[self._out]
        if self.output == "disparity":
            y = -y
        return tf.image.resize(y, tf.shape(images)[1:3], method="bilinear")

    def describe(self):
        return (f"PyDNet++ TFLite {self.path} replayed in TensorFlow ops ({self.scale} output read as "
                f"{self.output}, {PYDNET_INPUT_HW[0]}x{PYDNET_INPUT_HW[1]} input); differentiable")


__all__ = [
    "OUTPUT_KINDS",
    "PYDNET_ENV",
    "PYDNET_FILE",
    "PYDNET_INPUT_HW",
    "PYDNET_OUTPUTS",
    "PyDNetError",
    "PyDNetGraphDepth",
    "PyDNetTFLite",
    "is_pydnet_file",
    "normalize_relative",
    "PyDNetDepth",
    "resolve_pydnet",
]
