"""The contract between the Trainer and an objective: what goes in, what comes out.

**In: the encoded batch** ``enc``, built by :func:`encode` from a :class:`PairBatches` batch.

- ``enc["image"]``: one dict per image view, in the order of ``view_augmentations``, each with
  ``"embed"`` (B, D: the joint-space embedding, not normalised), ``"pooled"`` (B, W: the image
  feature before the projection) and ``"tokens"`` (B, N, W: patch / grid tokens).
- ``enc["text"][view]`` for every name in ``text_views`` ("caption", "masked", "eda"): ``"embed"``
  (B, D), ``"tokens"`` (B, L, W: per-position states) and ``"valid"`` (B, L: not padding).
- ``enc["scale"]``: the scale s = 1/τ, ready to multiply cosines with: ``exp(logit_scale)`` of
  the model's learnable log-scale, its value capped at the objective's ``scale_cap`` (100, the
  reference's, for CLIP, DeCLIP and DeFILIP; None for SLIP), see :func:`capped_scale`. The log
  starts at ``ModelConfig.logit_scale_init`` (log 1/0.07) and the Trainer clamps it to
  ``TrainConfig.logit_scale_clamp`` ([3, 6], the reference) after every step.
- ``enc["ids"]`` (B,) sample indices, ``enc["content"]`` (B,) what each image shows (or None),
  ``enc["mlm_targets"]`` (B, L) when a "masked" view was asked for, else None.

**Out: a dict of named terms.** ``"loss"`` is what the Trainer back-propagates; every other entry
is a detached scalar (a term or a diagnostic) that the history logs under its own name.

**Declared on the class** (read by batches, the registry, the run layer and zero-shot):
``view_augmentations`` (one entry per image view: an augmentation name, or None for the run's
own), ``text_views``, ``scale_cap``, ``zero_shot_scorer`` ("global" cosine, or "token-wise" through
``zero_shot_head``), ``run_defaults`` (the regime it needs, as ``--set`` keys, applied by every
path before what a user sets) and ``build(config, vocab_size, **options)``, whose keyword defaults
are the objective's options. Register the class with :func:`~declip_lite.objectives.registry.register`.
"""
import inspect

import torch
import torch.nn as nn



class Objective(nn.Module):
    """Base of every objective: one CLIP-style image view and the caption unless it says otherwise."""
    view_augmentations = (None,)
    text_views = ("caption",)
    scale_cap = 100.0  # the forward pass never uses s > 100 (the reference); None: uncapped
    zero_shot_scorer = "global"
    run_defaults = {}  # the regime it needs, as --set keys: {"model.logit_scale_init": 2.3, "train.lr": ...}

    @property
    def image_views(self):
        return len(self.view_augmentations)

    @property
    def zero_shot_head(self):
        """The module that scores zero-shot token-wise (FILIP's), or None for the global cosine."""
        return None

    @classmethod
    def build(cls, config, vocab_size):
        """The objective for a model of ``config`` and a tokenizer of ``vocab_size`` words."""
        return cls()

    @classmethod
    def options(cls):
        """{option: default} that ``build`` takes beyond the model config and the vocabulary."""
        params = list(inspect.signature(cls.build).parameters.values())[2:]
        return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY or p.default is not p.empty}

    def forward(self, enc):
        raise NotImplementedError(f"{type(self).__name__}.forward(enc) must return {{'loss': ..., ...}}")


def capped_scale(logit_scale, cap=None):
    """s = exp(logit_scale) with its value capped at ``cap``, as the reference does it
    (``s.data.clamp_(max=cap)``): above the cap the loss sees ``cap``, while ``logit_scale`` still
    gets exp's own gradient, exp(logit_scale) x dL/ds; the clamp on the log, not the cap, stops it."""
    s = logit_scale.exp()
    return s if cap is None else s + (s.clamp(max=cap) - s).detach()


def encode(model, batch, scale_cap=None):
    """Every image view in one call, every text view in one call; split back per view. Captions come
    as wide as the training set's longest one (``PairBatches`` cuts the shared padding once): a fixed
    shape and no host read, so the step can be captured; the causal tower's states up to EOT never
    see the pads."""
    V, B = batch["images"].shape[:2]
    img = model.encode_image(batch["images"].flatten(0, 1))
    names = list(batch["texts"])
    tokens = torch.cat([batch["texts"][n] for n in names])
    txt = {**model.encode_text(tokens), "valid": tokens != 0}  # valid: not padding
    return {"image": [{k: v[i * B:(i + 1) * B] for k, v in img.items()} for i in range(V)],
            "text": {n: {k: v[i * B:(i + 1) * B] for k, v in txt.items()} for i, n in enumerate(names)},
            "scale": capped_scale(model.logit_scale, scale_cap), "ids": batch["ids"],
            "content": batch.get("content"), "mlm_targets": batch.get("mlm_targets")}
