"""CORUN pretraining: clean images + depth, hazed on the fly, loss L1 + ASM re-hazing + CR.

Each step (reference ``CORUN_Pretrain_with_Transmission`` on ``HazeOnlineDataset``):

    P, t = random_corun_haze(J, 1 - depth)       # beta ~ U(0.2, 2.8), A ~ U(0.25, 1) +- 0.025,
                                                 # t = exp(-2 beta (1 - d_norm)); gamma/noise/JPEG
    J_K, T^_K = CORUN(P)
    L = L1(J_K, J) + asm_weight L1(J_K T^_K + 1 - T^_K, P) + contrastive_weight CR(J_K, J, P)

Our cached depth maps are depth in [0, 1] (larger = farther), normalised over the whole image
(d / 99th percentile) before the pipeline crops them, as the reference normalises before its
crop; CORUN's synthesis takes nearness maps (1 = nearest), so the trainer passes ``1 - depth``
and does not re-normalise each crop (t = exp(-2 beta depth)).

The checkpointed network stays the plain single-output CORUN (a drop-in dehazer for inference,
evaluation and a later Colabator fine-tune). The transmission T^_K is read from a second
Functional view over the SAME layers, ``keras.Model(dehazer.input, [J_K, crop(T^_K)])``: T^_K
is the output of the last ``TransmissionStep`` inside the dehazer's graph, so no weight is
duplicated and nothing changes in the saved model.
"""

from keras_dehaze.backend import keras, tf
from keras_dehaze.config import ConfigError
from keras_dehaze.data.training_data import clean_depth_training_data
from keras_dehaze.losses.corun_loss import CORUNLoss
from keras_dehaze.physics.corun_haze import CORUN_HAZE, random_corun_haze
from keras_dehaze.trainers.base import CR_SETTINGS, register_trainer
from keras_dehaze.trainers.common import average, build_contrastive
from keras_dehaze.trainers.paired import PairedTrainer
from keras_dehaze.trainers.rehazy import unpack_unpaired

# Networks with CORUN's transmission output (checked before anything is created).
CORUN_MODELS = ("corun", "corun_compact")


class NoTransmissionError(ValueError):
    """The network has no transmission map to read (not a CORUN-style unfolding network)."""


def transmission_view(dehazer):
    """``keras.Model(dehazer.inputs, [dehazed, transmission])`` sharing the dehazer's layers.

    - A network that already returns ``[dehazed, transmission]`` (``CORUN(...,
      return_transmission=True)``) is returned as is.
    - A single-output Functional network with ``TransmissionStep`` layers (CORUN, any stages,
      width, levels): T^_K is the output of the last ``TransmissionStep`` (at the padded size),
      cropped to the input size as ``CORUN(return_transmission=True)`` does.

    Raises:
        NoTransmissionError: any other network (no transmission output).
    """
    from keras_dehaze.layers import CropLike, TransmissionStep

    name = getattr(dehazer, "name", type(dehazer).__name__)
    outputs = getattr(dehazer, "outputs", None)
    if not getattr(dehazer, "_is_graph_network", False) or not outputs:
        raise NoTransmissionError(
            f"network '{name}' ({type(dehazer).__name__}) is not a Functional model, so no transmission "
            "map can be read from it; CORUN pretraining needs a CORUN network (model.name: corun or "
            "corun_compact)")
    if len(outputs) == 2 and list(dehazer.output_names)[1] == "transmission":
        return dehazer
    if len(outputs) != 1:
        raise NoTransmissionError(
            f"network '{name}' has {len(outputs)} outputs {list(dehazer.output_names)}; expected one image, or "
            "[dehazed, transmission]")
    steps = [layer for layer in dehazer.layers if isinstance(layer, TransmissionStep)]
    if not steps:
        raise NoTransmissionError(
            f"network '{name}' has no transmission output (no TransmissionStep layer): CORUN pretraining "
            "needs the transmission T^_K of CORUN's last stage for its re-hazing loss; use model.name "
            "corun or corun_compact (or trainer 'contrastive' for other networks)")
    last = steps[-1]  # Functional layers are in topological order: the last stage's TGDM
    t_hat = last.output
    transmission = CropLike(name="transmission")([t_hat, dehazer.inputs[0]])
    return keras.Model(dehazer.inputs, [outputs[0], transmission], name=f"{name}_with_transmission")


@register_trainer("corun_pretrain")
class CORUNPretrainTrainer(PairedTrainer):
    """CORUN pretraining on clean images with depth; ``test_step`` (PSNR/SSIM on pairs) is PairedTrainer's.

    Args:
        dehazer: a CORUN network (single-output, as checkpointed; or with
            ``return_transmission=True``).
        loss: a ``CORUNLoss`` (default: reference weights 1 / 0.01 / 0.2 with HED VGG16 features).
        degrade: apply the reference's gamma / noise / JPEG degradations (reference: True).
        seed: None (haze from the global RNG) or an int: the haze of optimizer step s on replica r
            uses the stateless seed ``fold_in(fold_in([seed, 0], s), r)`` (reproducible, resumable).
        haze_ranges: overrides of ``CORUN_HAZE`` (e.g. ``airlight=(1, 1)``); default the reference.

    Training data: ``(clean, depth)`` or ``((clean, depth), hazy)`` batches (the hazy images are
    ignored), depth [B, H, W, 1] in [0, 1], larger = farther. Logs loss, pix, asm, cr.

    Example:
        >>> trainer = CORUNPretrainTrainer(corun_from_preset("corun_compact"),
        ...                                CORUNLoss(feature_extractor="hed_vgg16"), seed=0)
        >>> trainer.compile(optimizer=keras.optimizers.Adam(1e-4))
        >>> trainer.fit(unpaired_dataset(clean_depth, [], 16, crop_size=288), validation_data=val)

    Reference:
        Fang et al., NeurIPS 2024; github.com/cnyvfang/CORUN-Colabator
        (``CORUN_Pretrain_with_Transmission``, ``HazeOnlineDataset``, train_corun_by_depth.yml).
    """

    config_section = "corun"
    folder_settings = ("corun.clean",)
    trainer_settings = CR_SETTINGS  # the contrastive-perceptual term; no CR warm-up
    trainer_defaults = {"cr_weight": 0.2, "features": "hed_vgg16"}  # reference weight; offline features
    train_metrics = ("loss", "pix", "asm", "cr")

    def __init__(self, dehazer, loss=None, degrade=True, seed=None, haze_ranges=None, notes=(), **kwargs):
        super().__init__(dehazer, contrastive=None, cr_weight=0.0, **kwargs)
        view = transmission_view(dehazer)  # raises NoTransmissionError first, before any VGG is built
        loss = loss if loss is not None else CORUNLoss(feature_extractor="hed_vgg16")
        # Untracked (as PairedTrainer's CR): the view shares the dehazer's variables and the
        # frozen VGG must not land in checkpoints.
        object.__setattr__(self, "_with_transmission", view)
        object.__setattr__(self, "_corun_loss", loss)
        self.degrade = bool(degrade)
        self.seed = None if seed is None else int(seed)
        self.haze_ranges = dict(haze_ranges or {})
        unknown = set(self.haze_ranges) - set(CORUN_HAZE)
        if unknown:
            raise ValueError(f"unknown CORUN haze settings {sorted(unknown)}; known: {sorted(CORUN_HAZE)}")
        self.notes = list(notes)
        mean = keras.metrics.Mean
        self.pix_tracker, self.asm_tracker = mean("pix"), mean("asm")

    @property
    def with_transmission(self):
        """The ``[dehazed, transmission]`` view of the dehazer (same layers and weights)."""
        return self._with_transmission

    @property
    def corun_loss(self):
        return self._corun_loss

    @property
    def contrastive(self):
        return self._corun_loss.contrastive

    @property
    def metrics(self):
        return [self.loss_tracker, self.pix_tracker, self.asm_tracker, self.cr_tracker,
                self.l1_tracker, self.psnr_tracker, self.ssim_tracker]

    def describe(self):
        """Multi-line summary of the loss, the haze synthesis and the transmission used (for logs)."""
        loss = self.corun_loss
        cr = loss.contrastive
        h = {**CORUN_HAZE, **self.haze_ranges}
        t_layer = self.with_transmission.get_layer("transmission")
        source = t_layer.inbound_nodes[0].inbound_layers[0].name if t_layer.inbound_nodes else "?"
        lines = [
            f"CORUN pretraining: L = {loss.pixel_weight:g} L1(J, gt) + {loss.asm_weight:g} L1(J T + 1 - T, P)"
            + (f" + {loss.contrastive_weight:g} CR ({cr.describe()})" if cr is not None
               else " (contrastive term OFF: trainer.cr_weight is 0)"),
            f"transmission T: output of layer '{source}' (last stage T^_K); checkpointed network: "
            f"'{self.dehazer.name}', {len(self.dehazer.outputs)} output",
            f"haze on the fly from clean + depth (nearness = 1 - depth): t = exp(-2 beta (1 - d_norm)), "
            f"beta ~ U{h['beta']}, A ~ U{h['airlight']} +- {h['airlight_jitter']} per channel; degradations "
            + (f"ON (gamma U{h['gamma']} p {h['gamma_p']}, noise {h['noise_level']}/255 p {h['noise_p']}, "
               f"JPEG q {h['jpeg_quality']} p {h['jpeg_p']})" if self.degrade else "OFF")
            + ("; seed: global RNG" if self.seed is None else f"; seed {self.seed} (per step and replica)"),
        ]
        return "\n".join(lines + self.notes)

    # ------------------------------------------------------------------ steps
    def haze_seed(self):
        """The stateless seed of this step and replica (None: global RNG)."""
        if self.seed is None:
            return None
        step = tf.cast(self.optimizer.iterations, tf.int32)
        replica = tf.distribute.get_replica_context()
        replica_id = replica.replica_id_in_sync_group if replica is not None else 0
        fold = tf.random.experimental.stateless_fold_in
        return fold(fold(tf.constant([self.seed, 0], tf.int32), step), tf.cast(replica_id, tf.int32))

    def synthesize(self, clean, depth, seed=None):
        """The reference online haze: dict hazy, transmission, airlight, beta (see random_corun_haze)."""
        return random_corun_haze(clean, 1.0 - depth, seed=seed, degrade=self.degrade, normalize=False,
                                 **self.haze_ranges)

    def per_example_terms(self, hazy, clean, training=True):
        """(per-example total, unweighted terms dict) of CORUNLoss for the network on `hazy`."""
        dehazed, transmission = self.with_transmission(hazy, training=training)
        loss = self.corun_loss
        terms = loss.terms(dehazed, transmission, clean, hazy)
        total = loss.pixel_weight * terms["pixel"] + loss.asm_weight * terms["asm"]
        if "contrastive" in terms:
            total += loss.contrastive_weight * terms["contrastive"]
        return total, terms

    def train_step(self, data):
        clean, depth, _ = unpack_unpaired(data)  # real hazy images (if any) are not used
        hazy = tf.stop_gradient(self.synthesize(clean, depth, seed=self.haze_seed())["hazy"])
        with tf.GradientTape() as tape:
            total, terms = self.per_example_terms(hazy, clean)
            loss = average(total)
        variables = self.dehazer.trainable_variables
        grads = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        self.loss_tracker.update_state(total)
        self.pix_tracker.update_state(terms["pixel"])
        self.asm_tracker.update_state(terms["asm"])
        self.cr_tracker.update_state(terms.get("contrastive", tf.zeros_like(total)))
        return self.metric_results(self.train_metrics)

    # ------------------------------------------------------------------ experiment hooks
    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        if config.model.name not in CORUN_MODELS:
            raise ConfigError(
                f"trainer.name corun_pretrain with model.name {config.model.name!r}: corun_pretrain needs CORUN's "
                f"transmission output; it works with model.name {'/'.join(CORUN_MODELS)} only")

    @classmethod
    def load_data(cls, config, strategy):
        """Clean images with depth: ``corun.clean`` and the clear images of ``data.train``."""
        return clean_depth_training_data(config, "corun")

    @classmethod
    def from_experiment_config(cls, config, dehazer):
        """Builds the trainer from the ``corun`` section, the contrastive term of the ``trainer``
        section (weight and features) and run.seed of an experiment `Config`."""
        c = config.corun
        t = cls.resolve_config(config).trainer
        if len(getattr(dehazer, "outputs", None) or [None]) != 1:
            raise ConfigError(
                "corun_pretrain checkpoints the network as a drop-in dehazer: build it with one output "
                "(drop model.args.return_transmission); the trainer reads the transmission itself")
        for key, value in (("corun.asm_weight", c.asm_weight), ("trainer.cr_weight", t.cr_weight)):
            if value < 0:
                raise ConfigError(f"{key} must be >= 0, got {value}")
        try:
            transmission_view(dehazer)
        except NoTransmissionError as e:
            raise ConfigError(f"trainer corun_pretrain with model.name {config.model.name!r}: {e}") from None
        contrastive = build_contrastive(t)  # missing pretrained features raise here, before training
        loss = CORUNLoss(asm_weight=c.asm_weight, contrastive_weight=t.cr_weight,
                         feature_extractor=t.features, contrastive=contrastive)
        return cls(dehazer, loss, degrade=c.degrade, seed=config.run.seed)


__all__ = ["CORUNPretrainTrainer", "NoTransmissionError", "transmission_view"]
