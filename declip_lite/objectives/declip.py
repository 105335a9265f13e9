"""DeCLIP (Li et al. 2022): CLIP plus the supervision that exists everywhere in the data.

    L = w_clip * L_CLIP+MVS + w_nns * L_NNS + w_iss * L_ISS(SimSiam) + w_tss * L_TSS(MLM)

Reference weights 0.4 / 0.2 / 0.2 / 0.2. A weight of 0 switches its term off (not computed);
``mvs=False`` reduces the first term to plain CLIP on view 1 and the caption, so DeCLIP with
only the CLIP weight is exactly :class:`~declip_lite.objectives.clip.CLIP`.

``masked_caption=True`` follows the reference quirk: T's CLIP feature comes from the
MLM-masked caption (one text pass serves CLIP and MLM).
"""
from ..models.clip import image_width
from .clip import contrastive_loss
from .contract import Objective
from .filip import FILIP
from .mlm import MLMHead
from .mvs import multi_view_loss
from .nns import NNS
from .registry import register
from .simsiam import SimSiam

WEIGHTS = {"clip": 0.4, "nns": 0.2, "simsiam": 0.2, "mlm": 0.2}


@register("declip")
class DeCLIP(Objective):
    def __init__(self, embed_dim, text_width, vocab_size, weights=None, mvs=True, masked_caption=True,
                 queue_size=4096, exclude_self=False, proj_dim=256, pred_dim=64, stop_gradient=True):
        super().__init__()
        self.weights = {**WEIGHTS, **(weights or {})}
        unknown = set(self.weights) - set(WEIGHTS)
        if unknown:
            raise ValueError(f"DeCLIP: unknown weight(s) {sorted(unknown)}; expected {sorted(WEIGHTS)}")
        self.mvs, self.masked_caption = mvs, masked_caption
        on = self.on
        self.simsiam = SimSiam(embed_dim, proj_dim, pred_dim, stop_gradient) if on("simsiam") else None
        self.mlm = MLMHead(text_width, vocab_size) if on("mlm") else None
        self.nns = NNS(embed_dim, queue_size, exclude_self) if on("nns") else None

    @classmethod
    def build(cls, config, vocab_size, weights=None, mvs=True, masked_caption=True, queue_size=4096,
              exclude_self=False, proj_dim=256, pred_dim=64, stop_gradient=True):
        return cls(config.embed_dim, config.text_width, vocab_size, weights, mvs, masked_caption, queue_size,
                   exclude_self, proj_dim, pred_dim, stop_gradient)

    def on(self, term):
        return self.weights[term] != 0

    @property
    def view_augmentations(self):
        return (None,) * (2 if self.mvs or self.on("simsiam") or self.on("nns") else 1)

    @property
    def caption_view(self):
        return "masked" if self.on("mlm") and self.masked_caption else "caption"

    @property
    def text_views(self):
        views = [self.caption_view] + (["masked"] if self.on("mlm") else [])
        return tuple(dict.fromkeys(views + (["eda"] if self.mvs or self.on("nns") else [])))

    def forward(self, enc):
        scale, images = enc["scale"], [v["embed"] for v in enc["image"]]
        t = enc["text"][self.caption_view]["embed"]
        texts = [t, enc["text"]["eda"]["embed"]] if self.mvs or self.on("nns") else [t]
        terms = {}
        if self.on("clip"):
            terms["clip"] = (multi_view_loss(images, texts, scale) if self.mvs
                             else contrastive_loss(images[0], t, scale))
        if self.nns is not None:
            terms.update(self.nns(images, texts, scale, enc.get("ids"), enc.get("content")))
        if self.simsiam is not None:
            terms.update(self.simsiam(images[0], images[1]))
        if self.mlm is not None:
            terms.update(self.mlm(enc["text"]["masked"]["tokens"], enc["mlm_targets"]))
        loss = sum(self.weights[k] * terms[k] for k in WEIGHTS if k in terms)
        return {"loss": loss, **{k: v.detach() for k, v in terms.items()}}


# DeCLIP with some signals off (weights keep the reference's ratios to the CLIP term): one signal
# each on top of CLIP, and the ablation ladder clip, +mvs, +ss, declip (the paper's Table 6)
register("clip+iss", mvs=False, weights={"nns": 0, "mlm": 0})(DeCLIP)
register("clip+tss", mvs=False, weights={"nns": 0, "simsiam": 0})(DeCLIP)
register("clip+nns", mvs=False, weights={"simsiam": 0, "mlm": 0})(DeCLIP)
register("clip+mvs", weights={"clip": 1.0, "nns": 0, "simsiam": 0, "mlm": 0})(DeCLIP)
register("clip+mvs+ss", weights={"nns": 0})(DeCLIP)


@register("defilip")
class DeFILIP(DeCLIP):
    """DeCLIP + ``filip_weight`` x FILIP between image view 1's patches and the caption's tokens
    (the CLIP-benchmark paper's strongest recipe; weight 0.2 there). Scored by the global cosine;
    its FILIP head also scores token-wise in the analysis. ``mask_padding``: FILIP's (True: padding
    never counts, the declared deviation; False: the reference's average over every position)."""

    def __init__(self, embed_dim, text_width, vocab_size, image_width, filip_weight=0.2, dense_dim=64, k=16,
                 mask_padding=True, **declip_options):
        super().__init__(embed_dim, text_width, vocab_size, **declip_options)
        self.filip = FILIP(image_width, text_width, dense_dim, k, mask_padding)
        self.filip_weight = filip_weight

    @classmethod
    def build(cls, config, vocab_size, filip_weight=0.2, dense_dim=64, k=16, mask_padding=True,
              **declip_options):
        return cls(config.embed_dim, config.text_width, vocab_size, image_width(config), filip_weight,
                   dense_dim, k, mask_padding, **declip_options)

    @classmethod
    def options(cls):
        return {**DeCLIP.options(), **Objective.options.__func__(cls)}

    @property
    def zero_shot_head(self):
        return self.filip

    def forward(self, enc):
        out = super().forward(enc)
        if self.filip_weight:
            text = enc["text"][self.caption_view]
            filip = self.filip.loss(enc["image"][0]["tokens"], text["tokens"], text["valid"])
            out["loss"], out["filip"] = out["loss"] + self.filip_weight * filip, filip.detach()
        return out
