"""Real multi-worker training: two worker processes on 127.0.0.1 with MultiWorkerMirroredStrategy.

Slow (two TensorFlow processes that synchronise every step: about 1-2 minutes on 2 CPU cores);
run it with

    python -m pytest -m slow tests/training/test_multi_worker.py

Each worker gets TF_CONFIG = {"cluster": {"worker": ["127.0.0.1:<p0>", "127.0.0.1:<p1>"]},
"task": {"type": "worker", "index": k}} (free ports picked by binding port 0; only 127.0.0.1 is
used) and runs the script below:

1. A tiny PairedTrainer(AECRNet(filters=4), no CR) with SGD for 3 steps on the same
   deterministic data, global batch 4 (2 per worker). SGD, not Adam: Adam's normalisation would
   hide a gradient scaled by the number of workers. Both workers must end with identical
   weights, equal (within float round-off) to a single-process run with the same global batch.
2. ``experiment.run`` with ``run.strategy: multi_worker`` and ONE shared ``run.out_dir``, then
   again with one epoch more (both workers validate and restore the chief's backup): only
   the chief (worker 0) writes config/summary/log/checkpoints there; worker 1 writes into a
   temporary directory that is removed (no ``workertemp`` leftovers, log.csv has one row per
   epoch, not two). The validation PSNR in summary.json equals the one computed here from
   latest.keras (one copy of the validation image per replica; metrics not summed over the
   workers, which tf_keras's default reduction would do).

The processes are killed if they have not finished after a timeout (in a ``finally``).
"""

import csv
import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from keras_dehaze.data import write_image

TIMEOUT_S = 240
WORKER_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    import numpy as np
    from keras_dehaze.distribute import is_chief, make_strategy, task
    strategy = make_strategy("multi_worker")  # before any other TensorFlow work
    from keras_dehaze.backend import keras, tf
    from keras_dehaze.config import load_config
    from keras_dehaze.experiment import run
    from keras_dehaze.models import AECRNet
    from keras_dehaze.trainers import PairedTrainer

    work = sys.argv[1]
    task_type, task_id = task(strategy)
    t0 = time.time()
    data = np.load(os.path.join(work, "batch.npz"))
    init = np.load(os.path.join(work, "init.npz"))
    with strategy.scope():
        trainer = PairedTrainer(AECRNet(filters=4), None)
        trainer.compile(optimizer=keras.optimizers.SGD(0.5))
        trainer.distribute_reduction_method = "first"  # as experiment.run sets it (see there)
        trainer(tf.zeros([1, 16, 16, 3]))
        trainer.dehazer.set_weights([init[f"w{i}"] for i in range(len(init.files))])
    ds = tf.data.Dataset.from_tensor_slices((data["hazy"], data["clear"])).batch(4).repeat()
    history = trainer.fit(ds, epochs=1, steps_per_epoch=3, verbose=0).history
    np.savez(os.path.join(work, f"weights_{task_id}.npz"), *trainer.dehazer.get_weights())
    print("RESULT", json.dumps({"task": task_id, "chief": is_chief(strategy),
                                "replicas": strategy.num_replicas_in_sync,
                                "steps": int(trainer.optimizer.iterations.numpy()),
                                "loss": history["loss"][0],
                                "seconds": round(time.time() - t0, 1)}), flush=True)

    def config(epochs):
        return load_config(None, [
            f"data.train={os.path.join(work, 'data')}", "data.val_scenes=['03']", f"run.out_dir={os.path.join(work, 'run')}",
            "run.strategy=multi_worker", "model.args.filters=4", "data.crop_size=16", "data.batch_size=4",
            f"optim.epochs={epochs}", "optim.steps_per_epoch=2", "trainer.cr_weight=0", "run.tensorboard=false",
            "run.verbose=0", "optim.schedule=constant",
        ])

    summary = run(config(2))
    print("SUMMARY", json.dumps({"task": task_id, "steps": summary["steps"]}), flush=True)
    resumed = run(config(3))  # every worker validates and restores the chief's backup, then 1 more epoch
    print("RESUMED", json.dumps({"task": task_id, "steps": resumed["steps"]}), flush=True)
    """
)


def free_ports(n):
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def single_process_weights(hazy, clear, init):
    from keras_dehaze.backend import keras, tf
    from keras_dehaze.models import AECRNet
    from keras_dehaze.trainers import PairedTrainer

    trainer = PairedTrainer(AECRNet(filters=4), None)
    trainer.compile(optimizer=keras.optimizers.SGD(0.5))
    trainer(tf.zeros([1, 16, 16, 3]))
    trainer.dehazer.set_weights(init)
    ds = tf.data.Dataset.from_tensor_slices((hazy, clear)).batch(4).repeat()
    history = trainer.fit(ds, epochs=1, steps_per_epoch=3, verbose=0).history
    return trainer.dehazer.get_weights(), history["loss"][0]


@pytest.mark.slow
def test_two_workers_match_single_process_and_only_the_chief_writes(tmp_path):
    from keras_dehaze.backend import keras
    from keras_dehaze.models import AECRNet

    rng = np.random.default_rng(0)
    clear = rng.uniform(0, 1, (8, 16, 16, 3)).astype("float32")
    hazy = (0.6 * clear + 0.36).astype("float32")
    np.savez(tmp_path / "batch.npz", hazy=hazy, clear=clear)
    keras.utils.set_random_seed(1)
    init = AECRNet(filters=4).get_weights()
    np.savez(tmp_path / "init.npz", **{f"w{i}": w for i, w in enumerate(init)})
    for i in range(4):  # the paired folder for experiment.run; scene 03 is held out
        image = rng.uniform(0, 1, (24, 24, 3))
        write_image(str(tmp_path / "data" / "GT" / f"{i:02d}.png"), image)
        write_image(str(tmp_path / "data" / "hazy" / f"{i:02d}.png"), 0.6 * image + 0.36)
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    scratch = tmp_path / "tmp"  # the workers' TMPDIR: the non-chief's temporary output dir goes here
    scratch.mkdir()

    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    procs, outputs = [], []
    start = time.time()
    try:
        for index in range(2):
            env = dict(os.environ, TMPDIR=str(scratch), CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
                       TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
            procs.append(subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        for index, proc in enumerate(procs):
            remaining = max(1.0, TIMEOUT_S - (time.time() - start))
            out, _ = proc.communicate(timeout=remaining)
            outputs.append(out)
            (tmp_path / f"worker_{index}.log").write_text(out)
    finally:
        for proc in procs:  # a worker waits forever for a dead peer: never leave one behind
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    elapsed = time.time() - start
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out[-4000:]

    results = [json.loads(next(l for l in out.splitlines() if l.startswith("RESULT"))[7:]) for out in outputs]
    summaries = [json.loads(next(l for l in out.splitlines() if l.startswith("SUMMARY"))[8:]) for out in outputs]
    resumed = [json.loads(next(l for l in out.splitlines() if l.startswith("RESUMED"))[8:]) for out in outputs]
    print(f"multi-worker test: {elapsed:.1f} s wall for both workers; {results}; {summaries}")
    assert [r["replicas"] for r in results] == [2, 2]
    assert [r["chief"] for r in results] == [True, False]
    assert [r["steps"] for r in results] == [3, 3]
    assert all("global batch 4 = 2 replica(s) x 2 per replica" in out for out in outputs)

    # 1. identical weights on both workers, equal to one process with the same global batch
    w0 = np.load(tmp_path / "weights_0.npz")
    w1 = np.load(tmp_path / "weights_1.npz")
    w0 = [w0[f"arr_{i}"] for i in range(len(w0.files))]
    w1 = [w1[f"arr_{i}"] for i in range(len(w1.files))]
    single, single_loss = single_process_weights(hazy, clear, init)
    step = max(float(np.abs(a - b).max()) for a, b in zip(single, init))
    between_workers = max(float(np.abs(a - b).max()) for a, b in zip(w0, w1))
    to_single = max(float(np.abs(a - b).max()) for a, b in zip(w0, single))
    print(f"largest weight change {step:.3g}; worker 0 vs 1 {between_workers:.3g}; vs single process {to_single:.3g}")
    assert step > 1e-3, "the steps must actually move the weights"
    assert between_workers == 0.0
    # A gradient summed instead of averaged over the workers would differ by about `step`.
    assert to_single < 1e-4 * max(1.0, step) + 1e-5
    # the logged loss is the global-batch mean too (not x 2: distribute_reduction_method "first")
    assert all(abs(r["loss"] - single_loss) < 1e-5 for r in results), (results, single_loss)

    # 2. experiment.run: one set of files, written by the chief only
    run_dir = tmp_path / "run"
    assert [s["steps"] for s in summaries] == [4, 4]
    assert [s["steps"] for s in resumed] == [6, 6]
    assert all(out.count("resuming from") == 1 for out in outputs)
    with open(run_dir / "summary.json") as f:
        assert json.load(f)["steps"] == 6
    with open(run_dir / "log.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1, 2]  # not written twice
    for name in ("config.yaml", "latest.keras", "best.keras", "best.json"):
        assert (run_dir / name).exists(), name
    from keras_dehaze.inference import load_keras_model

    load_keras_model(str(run_dir / "latest.keras"))
    leftovers = [p for p in run_dir.rglob("*") if "workertemp" in p.name] + \
        [p for p in scratch.iterdir() if p.name.startswith("keras_dehaze_workertemp")]
    assert not leftovers, leftovers
    assert (run_dir / "backup" / "chief").is_dir()
    # validation under 2 replicas (one copy of the image per replica) = the single-device score
    import tensorflow as tf

    from keras_dehaze.data import read_image

    with open(run_dir / "summary.json") as f:
        after = json.load(f)["after"]["val_psnr"]
    model = load_keras_model(str(run_dir / "latest.keras"))
    hazy_val = read_image(str(tmp_path / "data" / "hazy" / "03.png"))[None]
    clear_val = read_image(str(tmp_path / "data" / "GT" / "03.png"))[None]
    restored = tf.clip_by_value(model(hazy_val, training=False), 0.0, 1.0)
    assert abs(float(tf.image.psnr(restored, clear_val, 1.0)[0]) - after) < 1e-3


class _FakeResolver:
    task_type, task_id = "worker", 1


class _FakeStrategy:
    """What worker_write_dir reads from a MultiWorkerMirroredStrategy."""

    def __init__(self, chief):
        self.extended = type("Extended", (), {"should_checkpoint": chief})()
        self.cluster_resolver = None if chief else _FakeResolver()


def test_only_the_chief_writes_into_the_run_dir(tmp_path):
    from keras_dehaze.distribute import remove_worker_write_dir, worker_write_dir

    out = str(tmp_path / "run")
    assert worker_write_dir(out, _FakeStrategy(chief=True)) == out and os.path.isdir(out)
    remove_worker_write_dir(out, out)
    assert os.path.isdir(out)  # never removes the real run dir
    other = worker_write_dir(str(tmp_path / "run2"), _FakeStrategy(chief=False))
    assert "workertemp_1" in other and not other.startswith(str(tmp_path))
    assert not os.path.exists(tmp_path / "run2")  # a non-chief does not even create out_dir
    open(os.path.join(other, "log.csv"), "w").close()
    remove_worker_write_dir(other, str(tmp_path / "run2"))
    assert not os.path.exists(other)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OSError):  # experiment.run turns this into a ConfigError naming run.out_dir
        worker_write_dir(str(tmp_path / "afile" / "sub"), _FakeStrategy(chief=True))


def test_validation_batches_give_every_replica_a_copy():
    import tensorflow as tf

    from keras_dehaze.distribute import replicate_batches

    images = [tf.fill([1, 4 + i, 6, 3], float(i)) for i in range(3)]  # one image per batch, each its own size
    ds = tf.data.Dataset.from_generator(lambda: ((im, im) for im in images),
                                        output_signature=(tf.TensorSpec([1, None, None, 3]),) * 2)
    batches = list(replicate_batches(ds, 2))
    assert [tuple(h.shape) for h, _ in batches] == [(2, 4, 6, 3), (2, 5, 6, 3), (2, 6, 6, 3)]
    assert [float(h[1, 0, 0, 0]) for h, _ in batches] == [0.0, 1.0, 2.0]
    assert replicate_batches(ds, 1) is ds
