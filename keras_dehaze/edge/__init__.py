"""Edge deployment: Keras -> TFLite export, quantisation, GPU checks, benchmark and the on-device runner.

The scripts in the repository's ``edge/`` folder (``convert.py``, ``infer.py``, ``benchmark.py``,
``ship_preset.py``, ``gpu_compat.py``) parse their options and call these modules.

Run on a device (numpy, OpenCV and LiteRT only; no TensorFlow):

* ``runner``: the on-device command line (``edge/infer.py``) and the list of files to copy.
* ``tflite_dehazer``: ``TFLiteDehazer``, any image size through a ``.tflite`` (resize or tiles).
* ``interpreter``: ``TFLiteModel``, the one wrapper of the LiteRT interpreter (quantisation).
* ``litert_gpu``: LiteRT's GPU accelerator (``CompiledModel``).

Read ``.tflite`` files (numpy and flatbuffers; no TensorFlow):

* ``flatbuffer``: the operators and tensors of a ``.tflite`` (``load_model_info``).
* ``gpu_compat``: static GPU-delegate compatibility verdicts.
* ``gpu_rewrite``: exact rewrites that let the GPU delegate take a float model.
* ``float_islands``: the float operators left in an int8 model.

Need TensorFlow (the training machine):

* ``quantization``: quantisation-aware training (QuantizeConfigs) and fixed-size rebuilds.
* ``qat_finetune``: a short QAT fine-tune of a float model.
* ``export``: Keras -> ``.tflite`` (float32, float16, int8) and a preset's shipped int8 file.
* ``conversion``: ``edge/convert.py``: export, parity with Keras, accuracy, report.
* ``conversion_report``: its ``report.json`` and ``report.md``.
* ``benchmark``: latency and memory of ``.tflite`` (and Keras) models, one process each
  (TensorFlow only in the Keras workers).

This ``__init__`` imports nothing, so the device modules stay free of TensorFlow.
"""
