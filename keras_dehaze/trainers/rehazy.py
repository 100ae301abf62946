"""Rehazy dual-branch training for any dehazer (single- or multi-output), shared weights.

Clean branch (always): a clean image Jc with depth dc is hazed with the ASM,
``Ic = Jc t + A (1 - t)``, ``t = exp(-beta dc)``, ``A ~ U(A range)``, ``beta ~ U(beta range)`` per
image, and ``L_clean = multiscale L1(dehaze(Ic), Jc)`` (weights 1, 0.5, 0.25).

Hazy branch (after `clean_only_steps` optimizer steps): a real hazy image I0 gets airlight A0 from
the dark channel (mean colour of its brightest 0.1 %, TF ops), relative depth d0 from the rehazy
depth estimator (DCP prior by default), ``dbeta ~ U(dbeta range)`` and the rehazy image
``I_r = dt I0 + A0 (1 - dt)``, ``dt = exp(-dbeta d0)`` (Eq. 6). With J0 = dehaze(I0), Jr = dehaze(I_r):

    L_cons  = multiscale L1(J0, Jr)
    L_depth = L1(D(J0), D(I0)) + L1(D(Jr), D(I0))        (D: a differentiable depth estimator)
    L_sem   = KL(S(J0) || S(I0)) + KL(S(Jr) || S(I0))     (S: a semantic encoder; CLIP in the paper)
    L_hazy  = L_cons + w_depth L_depth + w_sem L_sem

Terms without an estimator/encoder are OFF (zero, logged as OFF), never faked. Every loss is
per example and reduced with ``tf.nn.compute_average_loss`` (correct under tf.distribute); the
phase switch is a ``tf.cond`` on ``optimizer.iterations`` inside the graph, so the hazy branch
costs nothing during the clean-only phase.
"""

import logging

from keras_dehaze.backend import keras, tf
from keras_dehaze.config import ConfigError
from keras_dehaze.data.training_data import clean_depth_training_data
from keras_dehaze.depth import DCPPriorDepth, build_depth_estimator
from keras_dehaze.losses.semantic import build_semantic_encoder, semantic_kl
from keras_dehaze.physics import dcp_tf
from keras_dehaze.physics.scattering import PRESETS, rehazy, sample_haze_params, sample_uniform, synthesize_haze
from keras_dehaze.trainers.base import register_trainer
from keras_dehaze.trainers.common import MULTISCALE_WEIGHTS, as_outputs, average, multiscale_l1, per_example_l1
from keras_dehaze.trainers.paired import PairedTrainer

logger = logging.getLogger("keras_dehaze.rehazy")

DEPTH_LOSS_MODES = ("auto", "always", "never")  # YAML reads on/off as booleans


def multiscale_pair_l1(outputs_a, outputs_b, weights=MULTISCALE_WEIGHTS):
    """Per-example sum over scales of weight_s * L1(a_s, b_s) for two output lists."""
    outputs_a, outputs_b = as_outputs(outputs_a), as_outputs(outputs_b)
    total = 0.0
    for a, b, w in zip(outputs_a, outputs_b, weights):
        total += w * per_example_l1(a, b)
    return total


def unpack_unpaired(data):
    """(clean, depth [B,H,W,1], hazy or None) from ((clean, depth), hazy), (clean, depth) or a dict."""
    if isinstance(data, (tuple, list)) and len(data) == 1:  # train_on_batch(x) packs x as (x,)
        data = data[0]
    if isinstance(data, dict):
        clean, depth, hazy = data["clean"], data["depth"], data.get("hazy")
    elif isinstance(data[0], (tuple, list)):
        (clean, depth), hazy = data
    else:
        (clean, depth), hazy = data, None
    return clean, depth[..., :1], hazy


@register_trainer("rehazy")
class RehazyTrainer(PairedTrainer):
    """Dual-branch Rehazy training; ``test_step`` (PSNR/SSIM on paired data) is PairedTrainer's.

    Args:
        dehazer: a ``keras.Model`` mapping hazy RGB in [0, 1] to one image or [J, J/2, J/4].
        depth_estimator: D of the depth-consistency loss; None switches the term OFF. Must be
            differentiable (a network run by LiteRT, e.g. `PyDNetDepth`, is not: give it as
            `rehazy_depth`, where no gradient is needed; `PyDNetGraphDepth` is).
        semantic_encoder: S of the semantic loss (`keras_dehaze.losses.semantic`); None: OFF.
        rehazy_depth: estimator of d0 for rehazy generation; None: `depth_estimator` if given,
            else the DCP prior.
        airlight, beta, delta_beta: (low, high) sampling ranges; default: the indoor preset.
        clean_only_steps: optimizer steps of the clean-only phase (paper 3e5).
        w_depth, w_sem: weights of L_depth and L_sem (paper 0.01 each).
        notes: extra lines for `describe()` (e.g. why a term is off).

    Example:
        >>> trainer = RehazyTrainer(MSDehazeNet(), semantic_encoder=VGGSemantic(), clean_only_steps=300000)
        >>> trainer.compile(optimizer=keras.optimizers.Adam(2e-4))
        >>> trainer.fit(unpaired_dataset(...), validation_data=validation_dataset(val_pairs))

    Reference:
        "Learning Unpaired Image Dehazing with Physics-based Rehazy Generation", Sec. 3.2-3.4,
        Eq. 6-12.
    """

    config_section = "rehazy"
    folder_settings = ("rehazy.clean", "rehazy.hazy")
    trainer_settings = ()  # no contrastive term
    trainer_defaults = {}
    train_metrics = ("loss", "clean", "cons", "depth", "sem")

    def __init__(self, dehazer, depth_estimator=None, semantic_encoder=None, rehazy_depth=None,
                 airlight=None, beta=None, delta_beta=None, clean_only_steps=0, w_depth=0.01, w_sem=0.01,
                 notes=(), **kwargs):
        super().__init__(dehazer, contrastive=None, cr_weight=0.0, **kwargs)
        preset = PRESETS["indoor"]
        self.airlight = tuple(float(v) for v in (airlight or preset["airlight"]))
        self.beta = tuple(float(v) for v in (beta or preset["beta"]))
        self.delta_beta = tuple(float(v) for v in (delta_beta or preset["delta_beta"]))
        self.clean_only_steps = int(clean_only_steps)
        self.w_depth, self.w_sem = float(w_depth), float(w_sem)
        self.notes = list(notes)
        if depth_estimator is not None and not depth_estimator.differentiable:
            self.notes.append(f"depth term OFF: {depth_estimator.describe()} is not differentiable")
            depth_estimator = None
        if semantic_encoder is not None and not semantic_encoder.differentiable:
            self.notes.append(f"semantic term OFF: {semantic_encoder.describe()} is not differentiable")
            semantic_encoder = None
        if rehazy_depth is None:
            rehazy_depth = depth_estimator or DCPPriorDepth()
        # Frozen helpers stay out of Keras tracking (and out of checkpoints).
        object.__setattr__(self, "_depth_estimator", depth_estimator)
        object.__setattr__(self, "_semantic_encoder", semantic_encoder)
        object.__setattr__(self, "_rehazy_depth", rehazy_depth)
        if depth_estimator is None and not any(n.startswith("depth term OFF") for n in self.notes):
            self.notes.append("depth term OFF: no differentiable depth estimator configured")
        if semantic_encoder is None and not any(n.startswith("semantic term OFF") for n in self.notes):
            self.notes.append("semantic term OFF: no semantic encoder configured")
        for note in self.notes:
            logger.info(note)
        mean = keras.metrics.Mean
        self.clean_tracker, self.cons_tracker = mean("clean"), mean("cons")
        self.depth_tracker, self.sem_tracker = mean("depth"), mean("sem")

    @property
    def depth_estimator(self):
        return self._depth_estimator

    @property
    def semantic_encoder(self):
        return self._semantic_encoder

    @property
    def rehazy_depth(self):
        return self._rehazy_depth

    @property
    def metrics(self):
        return [self.loss_tracker, self.clean_tracker, self.cons_tracker, self.depth_tracker, self.sem_tracker,
                self.l1_tracker, self.psnr_tracker, self.ssim_tracker]

    def describe(self):
        """Multi-line summary of the losses, ranges and which terms are on (for logs)."""
        d = self.depth_estimator
        s = self.semantic_encoder
        lines = [
            f"Rehazy: L_clean (A ~ U{self.airlight}, beta ~ U{self.beta}); after {self.clean_only_steps} "
            f"clean-only steps + L_cons (dbeta ~ U{self.delta_beta})"
            + (f" + {self.w_depth} L_depth" if d is not None else "")
            + (f" + {self.w_sem} L_sem" if s is not None else ""),
            f"rehazy depth d0: {self.rehazy_depth.describe()}; A0: DCP brightest 0.1% of the dark channel",
            f"depth term: {d.describe() if d is not None else 'OFF'}",
            f"semantic term: {s.describe() if s is not None else 'OFF'}",
        ]
        return "\n".join(lines + self.notes)

    # ------------------------------------------------------------------ branches
    def clean_losses(self, clean, depth, training=True):
        """Per-example L_clean on ASM-hazed clean images."""
        airlight, beta = sample_haze_params(tf.shape(clean)[0], self.airlight, self.beta)
        synthetic = tf.clip_by_value(synthesize_haze(clean, depth, airlight, beta), 0.0, 1.0)
        return multiscale_l1(self.dehazer(synthetic, training=training), clean)

    def make_rehazy(self, hazy):
        """(I_r, A0 [B, 3], d0, dbeta) for real hazy images I0 (Eq. 6); no gradient."""
        patch, _ = dcp_tf.window_sizes(hazy)
        a0 = tf.stop_gradient(dcp_tf.estimate_airlight(hazy, patch=patch))
        d0 = tf.stop_gradient(self.rehazy_depth(hazy))
        dbeta = sample_uniform(tf.shape(hazy)[0], self.delta_beta)
        return tf.clip_by_value(rehazy(hazy, d0, a0, dbeta), 0.0, 1.0), a0, d0, dbeta

    def hazy_losses(self, hazy, training=True):
        """Per-example (L_cons, L_depth, L_sem) of the hazy branch."""
        n = tf.shape(hazy)[0]
        rehazed, _, d0, _ = self.make_rehazy(hazy)
        outputs = as_outputs(self.dehazer(tf.concat([hazy, rehazed], 0), training=training))
        j0, jr = [o[:n] for o in outputs], [o[n:] for o in outputs]
        cons = multiscale_pair_l1(j0, jr)
        restored = tf.clip_by_value(outputs[0], 0.0, 1.0)  # [J0; Jr], full resolution
        depth = tf.zeros_like(cons)
        if self.depth_estimator is not None:
            # D(I0) is d0 when one estimator gives both (no gradient either way): one pass less
            same = self.depth_estimator is self.rehazy_depth
            target = d0 if same else tf.stop_gradient(self.depth_estimator(hazy))
            pred = self.depth_estimator(restored)
            depth = per_example_l1(pred[:n], target) + per_example_l1(pred[n:], target)
        sem = tf.zeros_like(cons)
        if self.semantic_encoder is not None:
            target = tf.stop_gradient(self.semantic_encoder(hazy))
            pred = self.semantic_encoder(restored)
            sem = semantic_kl(pred[:n], target) + semantic_kl(pred[n:], target)
        return cons, depth, sem

    def hazy_phase(self):
        """True (a bool tensor) once the clean-only phase is over."""
        return self.optimizer.iterations >= self.clean_only_steps

    def train_step(self, data):
        clean, depth, hazy = unpack_unpaired(data)
        with tf.GradientTape() as tape:
            l_clean = self.clean_losses(clean, depth)
            loss = average(l_clean)
            mean_total = tf.reduce_mean(l_clean)
            if hazy is not None:
                zeros = tf.zeros([tf.shape(hazy)[0]])
                cons, l_depth, sem = tf.cond(self.hazy_phase(), lambda: self.hazy_losses(hazy),
                                             lambda: (zeros, zeros, zeros))
                l_hazy = cons + self.w_depth * l_depth + self.w_sem * sem
                loss += average(l_hazy)
                mean_total += tf.reduce_mean(l_hazy)
        variables = self.dehazer.trainable_variables
        grads = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        self.loss_tracker.update_state(mean_total)
        self.clean_tracker.update_state(l_clean)
        if hazy is not None:
            self.cons_tracker.update_state(cons)
            self.depth_tracker.update_state(l_depth)
            self.sem_tracker.update_state(sem)
        return self.metric_results(self.train_metrics)

    # ------------------------------------------------------------------ experiment hooks
    @classmethod
    def load_data(cls, config, strategy):
        """Clean images with depth (``rehazy.clean``, clear images of ``data.train``) and the real
        hazy images of ``rehazy.hazy``."""
        return clean_depth_training_data(config, "rehazy")

    @classmethod
    def from_experiment_config(cls, config, dehazer):
        """Builds the trainer from the ``rehazy`` section of an experiment `Config`."""
        r = config.rehazy
        if r.preset not in PRESETS:
            raise ConfigError(f"rehazy.preset must be one of {sorted(PRESETS)}, got {r.preset!r}")
        if r.depth_loss not in DEPTH_LOSS_MODES:
            raise ConfigError(f"rehazy.depth_loss must be one of {DEPTH_LOSS_MODES}, got {r.depth_loss!r}")
        for key in ("airlight", "beta", "delta_beta"):
            value = getattr(r, key)
            if value and (len(value) != 2 or not float(value[0]) <= float(value[1])):
                raise ConfigError(f"rehazy.{key} must be [low, high], got {list(value)}")
        preset = PRESETS[r.preset]
        if not any(r.hazy):  # the "w/o Rehazy" ablation: no frozen helper networks to build
            return cls(
                dehazer, rehazy_depth=DCPPriorDepth(), airlight=r.airlight or preset["airlight"],
                beta=r.beta or preset["beta"], delta_beta=r.delta_beta or preset["delta_beta"],
                clean_only_steps=r.clean_only_steps, w_depth=r.w_depth, w_sem=r.w_sem,
                notes=["hazy branch OFF: rehazy.hazy is empty (clean branch only)"],
            )
        model_opts = dict(input_size=tuple(r.depth_input_size) or None, mean=tuple(r.depth_mean) or None,
                          std=tuple(r.depth_std) or None)
        # PyDNet++ is replayed in TF ops (differentiable) when the depth term may be on; the same
        # estimator then also gives d0 (stop-gradient there): one network, no LiteRT call in the graph.
        estimator = build_depth_estimator(r.depth, output=r.depth_output, differentiable=r.depth_loss != "never",
                                          **model_opts)
        notes, loss_depth = [], None
        if estimator is None:
            notes.append("depth term OFF: rehazy.depth is 'none' (d0 for rehazy generation: DCP prior)")
        elif r.depth_loss == "never":
            notes.append("depth term OFF: rehazy.depth_loss is 'never'")
        elif not estimator.differentiable:
            # L1(D(J0), D(I0)) needs dD/dJ0; a TFLite network run by LiteRT is outside the graph
            # with zero gradient, so the term would be a constant. It still gives d0 (no gradient needed).
            if r.depth_loss == "always":
                raise ConfigError(f"rehazy.depth_loss=always needs a differentiable depth network, but "
                                  f"{estimator.describe()}; a .tflite can only give the d0 of rehazy "
                                  f"generation (depth_loss: auto). Export a SavedModel/.keras for the term.")
            notes.append(f"depth term OFF: {estimator.describe()} is not differentiable "
                         f"(it gives d0 for rehazy generation only)")
        elif r.depth_loss == "auto" and not estimator.haze_invariant:
            notes.append("depth term OFF: the DCP prior measures haze, not scene depth; L1(D(J0), D(I0)) with "
                         "it would reward keeping haze (give a depth network, or force with "
                         "rehazy.depth_loss=always)")
        else:
            loss_depth = estimator
        sem_opts = dict(input_size=tuple(r.semantic_input_size) or None, mean=tuple(r.semantic_mean) or None,
                        std=tuple(r.semantic_std) or None, temperature=r.semantic_temperature)
        semantic = build_semantic_encoder(r.semantic, **sem_opts)
        if semantic is None:
            notes.append("semantic term OFF: rehazy.semantic is 'none'")
        return cls(
            dehazer, depth_estimator=loss_depth, semantic_encoder=semantic,
            rehazy_depth=estimator if estimator is not None else DCPPriorDepth(),
            airlight=r.airlight or preset["airlight"], beta=r.beta or preset["beta"],
            delta_beta=r.delta_beta or preset["delta_beta"], clean_only_steps=r.clean_only_steps,
            w_depth=r.w_depth, w_sem=r.w_sem, notes=notes,
        )


__all__ = ["RehazyTrainer", "multiscale_pair_l1", "unpack_unpaired"]
