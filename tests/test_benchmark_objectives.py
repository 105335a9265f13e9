"""SLIP, FILIP and DeFILIP (the CLIP-benchmark objectives) against brute force."""
import math

import pytest
import torch
import torch.nn.functional as F

from declip_lite import PairBatches, ShapeCaps, experiments
from declip_lite.data.views import AUGMENTATIONS
from declip_lite.models.clip import model_config
from declip_lite.objectives import FILIP, DeCLIP, DeFILIP, nt_xent, token_wise_logits
from declip_lite.objectives.filip import select_tokens
from declip_lite.text.augment import IGNORE


def test_nt_xent_equals_brute_force():
    a, b = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    views = F.normalize(torch.cat([a, b]), dim=-1)
    n, total = 5, 0.0
    for i in range(2 * n):
        partner = (i + n) % (2 * n)
        others = [math.exp(float(views[i] @ views[j]) / 0.1) for j in range(2 * n) if j != i]
        total += -float(views[i] @ views[partner]) / 0.1 + math.log(sum(others))
    assert math.isclose(nt_xent(a, b, 0.1).item(), total / (2 * n), rel_tol=1e-9)


def brute_force_filip(x, y, keep_x, keep_y, scale, valid):
    """The reference's late interaction: every patch (every valid token) averages its best match
    among the other side's KEPT tokens (patches)."""
    N, L = len(x), len(y)
    i2t, t2i = torch.zeros(N, L, dtype=x.dtype), torch.zeros(L, N, dtype=x.dtype)
    for i in range(N):
        for j in range(L):
            kept_patches = [p for p in range(x.shape[1]) if keep_x[i, p]]
            kept_tokens = [t for t in range(y.shape[1]) if keep_y[j, t]]
            tokens = [t for t in range(y.shape[1]) if valid[j, t]]
            s = lambda p, t: scale * float(x[i, p] @ y[j, t])  # noqa: E731
            i2t[i, j] = sum(max(s(p, t) for t in kept_tokens) for p in range(x.shape[1])) / x.shape[1]
            t2i[j, i] = sum(max(s(p, t) for p in kept_patches) for t in tokens) / len(tokens)
    return i2t, t2i


def test_filip_logits_equal_an_explicit_loop_with_padding_and_top_k():
    g = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(3, 6, 5, generator=g, dtype=torch.float64), dim=-1)
    y = F.normalize(torch.randn(4, 7, 5, generator=g, dtype=torch.float64), dim=-1)
    valid = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5, [1] * 5 + [0] * 2], dtype=torch.bool)
    keep_x, keep_y = select_tokens(x[:3], y[:3], valid[:3], k=3)
    assert (keep_x.sum(1) == 3).all() and keep_y.sum(1).tolist() == [3, 3, 2]  # k capped by real tokens
    assert not (keep_y & ~valid[:3]).any()  # padding is never selected
    # own-pair ranking: the kept patches of pair 0 are its 3 best by summed similarity to its tokens
    score = (x[0] @ y[0].T).sum(1)
    assert set(keep_x[0].nonzero()[:, 0].tolist()) == set(score.topk(3).indices.tolist())
    i2t, t2i = token_wise_logits(x, y[:3], keep_x, keep_y, 2.0, valid[:3])
    ref_i2t, ref_t2i = brute_force_filip(x, y[:3], keep_x, keep_y, 2.0, valid[:3])
    assert torch.allclose(i2t, ref_i2t) and torch.allclose(t2i, ref_t2i)
    everything = torch.ones_like(valid[:3])  # mask_padding=False: the reference averages over padding too
    unmasked = token_wise_logits(x, y[:3], keep_x, keep_y, 2.0, everything)[1]
    assert torch.allclose(unmasked, brute_force_filip(x, y[:3], keep_x, keep_y, 2.0, everything)[1])
    assert not torch.allclose(unmasked, t2i)


def test_filip_sees_the_masked_caption_and_can_follow_the_reference_on_padding():
    filip = FILIP(16, 12, dense_dim=8, k=2)
    assert filip.text_views == ("masked",) and FILIP(16, 12, masked_caption=False).text_views == ("caption",)
    g = torch.Generator().manual_seed(1)
    image, text = torch.randn(3, 4, 16, generator=g), torch.randn(3, 5, 12, generator=g)
    valid = torch.tensor([[1, 1, 1, 0, 0]] * 3, dtype=torch.bool)
    reference = FILIP(16, 12, dense_dim=8, k=2, mask_padding=False)
    reference.load_state_dict(filip.state_dict())
    assert not torch.isclose(filip.loss(image, text, valid), reference.loss(image, text, valid))
    assert torch.isclose(reference.loss(image, text, valid),
                         reference.loss(image, text, torch.ones_like(valid)))


def test_defilip_with_filip_weight_zero_equals_declip():
    g = torch.Generator().manual_seed(0)
    n = 6
    enc = {"image": [{"embed": torch.randn(n, 8, generator=g), "tokens": torch.randn(n, 4, 16, generator=g)}
                     for _ in range(2)],
           "text": {v: {"embed": torch.randn(n, 8, generator=g), "tokens": torch.randn(n, 5, 12, generator=g),
                        "valid": torch.ones(n, 5, dtype=torch.bool)} for v in ("masked", "eda")},
           "scale": torch.tensor(12.0), "ids": torch.arange(n),
           "mlm_targets": torch.where(torch.rand(n, 5, generator=g) < 0.3, 7, IGNORE)}
    torch.manual_seed(0)
    declip = DeCLIP(8, 12, 20, queue_size=32)
    torch.manual_seed(0)
    off = DeFILIP(8, 12, 20, image_width=16, filip_weight=0, queue_size=32)
    assert torch.equal(declip(enc)["loss"], off(enc)["loss"])
    torch.manual_seed(0)
    base = DeCLIP(8, 12, 20, queue_size=32)(enc)["loss"]  # fresh queue, as the DeFILIP below has
    torch.manual_seed(0)
    on = DeFILIP(8, 12, 20, image_width=16, queue_size=32)(enc)
    assert torch.isclose(on["loss"], base + 0.2 * on["filip"]) and on["filip"] > 0


def test_defilip_can_average_over_padding_as_the_reference_does():
    g = torch.Generator().manual_seed(2)
    n, valid = 6, torch.tensor([[1, 1, 1, 0, 0]] * 6, dtype=torch.bool)  # captions with padding
    enc = {"image": [{"embed": torch.randn(n, 8, generator=g), "tokens": torch.randn(n, 4, 16, generator=g)}
                     for _ in range(2)],
           "text": {v: {"embed": torch.randn(n, 8, generator=g), "tokens": torch.randn(n, 5, 12, generator=g),
                        "valid": valid} for v in ("masked", "eda")},
           "scale": torch.tensor(12.0), "ids": torch.arange(n),
           "mlm_targets": torch.where(torch.rand(n, 5, generator=g) < 0.3, 7, IGNORE)}
    torch.manual_seed(0)
    ours = DeFILIP(8, 12, 20, image_width=16, queue_size=32)
    torch.manual_seed(0)
    reference = DeFILIP(8, 12, 20, image_width=16, queue_size=32, mask_padding=False)
    text = enc["text"]["masked"]
    everything = ours.filip.loss(enc["image"][0]["tokens"], text["tokens"], torch.ones_like(valid))
    assert torch.isclose(reference(enc)["filip"], everything)  # the same head, padding counted
    assert not torch.isclose(ours(enc)["filip"], everything) and DeFILIP.options()["mask_padding"] is True


@pytest.mark.parametrize("method", ["slip", "filip", "defilip"])
def test_benchmark_objectives_train_a_step(method):
    run = experiments.build(method, "smoke", 0, device="cpu", pairs=64, batch_size=16, steps=2, eval_n=8)
    heads = [p.detach().clone() for p in run.objective.parameters()]
    terms = run.trainer.train_step()
    assert torch.isfinite(terms["loss"])  # and the objective's own heads learned from it:
    assert all(not torch.equal(a, b) for a, b in zip(heads, run.objective.parameters()))
    assert {"slip": "simclr", "filip": "filip", "defilip": "filip"}[method] in terms


@pytest.mark.parametrize("method, expected", [("clip", ["safe"]), ("declip", ["safe", "safe"]),
                                              ("slip", ["safe", "moco", "moco"])])
def test_every_image_view_gets_one_augmentation_whoever_builds_the_batches(method, expected, tokenizer):
    objective = experiments.make_objective(method, model_config("rn-tiny", vocab_size=50), 50)
    batches = PairBatches.for_objective(ShapeCaps(64), tokenizer, 16, objective, "safe")
    assert [AUGMENTATIONS[name] for name in expected] == batches.augs
    assert batches.batch(0)["images"].shape[0] == len(expected) and batches.text_views == objective.text_views
