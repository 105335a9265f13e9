import math

import torch
import torch.nn.functional as F

from declip_lite.objectives import CLIP, DeCLIP, NNQueue, SimSiam, contrastive_loss, multi_view_loss
from declip_lite.objectives.mlm import MLMHead
from declip_lite.objectives.nns import NNS
from declip_lite.text.augment import IGNORE


def brute_force_clip(img, txt, s):
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    n, total = len(img), 0.0
    for i in range(n):
        row = [s * float(img[i] @ txt[j]) for j in range(n)]
        col = [s * float(txt[i] @ img[j]) for j in range(n)]
        total += -row[i] + math.log(sum(math.exp(r) for r in row))
        total += -col[i] + math.log(sum(math.exp(c) for c in col))
    return total / (2 * n)


def test_clip_loss_equals_brute_force():
    img, txt = torch.randn(7, 5, dtype=torch.float64), torch.randn(7, 5, dtype=torch.float64)
    got = contrastive_loss(img, txt, torch.tensor(9.5, dtype=torch.float64))
    assert math.isclose(got.item(), brute_force_clip(img, txt, 9.5), rel_tol=1e-9)


def test_aligned_embeddings_at_high_scale_give_zero_loss():
    x = torch.eye(8)
    assert contrastive_loss(x, x * 3, torch.tensor(100.0)) < 1e-3
    assert contrastive_loss(x, x.roll(1, 0), torch.tensor(100.0)) > 10


def test_clip_objective_returns_named_terms():
    enc = {"image": [{"embed": torch.randn(4, 6, requires_grad=True)}],
           "text": {"caption": {"embed": torch.randn(4, 6)}},
           "scale": torch.tensor(7.0, requires_grad=True)}
    out = CLIP()(enc)
    assert set(out) == {"loss", "clip"} and out["loss"].requires_grad
    out["loss"].backward()
    assert enc["scale"].grad is not None


def test_the_scale_is_capped_at_100_as_the_reference_does_it():
    """The reference: ``s = logit_scale.exp(); s.data = s.data.clamp(max=100)``, then the loss."""
    from declip_lite.objectives.contract import capped_scale
    img, txt = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    for log in (3.5, 6.0):
        ours, ref = (torch.tensor(log, dtype=torch.float64, requires_grad=True) for _ in range(2))
        s = ref.exp()
        s.data = s.data.clamp(max=100)
        contrastive_loss(img, txt, s).backward()
        got = capped_scale(ours, 100.0)
        contrastive_loss(img, txt, got).backward()
        assert (math.isclose(got.item(), min(math.exp(log), 100.0))
                and math.isclose(ours.grad.item(), ref.grad.item()))
    # SLIP: uncapped
    assert math.isclose(capped_scale(torch.tensor(6.0), None).item(), math.exp(6.0), rel_tol=1e-6)


def test_the_trainer_hands_each_objective_its_capped_scale(tokenizer):
    from declip_lite.objectives import SLIP, encode
    from declip_lite.data.loader import PairBatches
    from declip_lite.data.shapecaps import ShapeCaps
    from declip_lite.models.clip import CLIPModel, model_config
    model = CLIPModel(model_config(vocab_size=tokenizer.vocab_size, context_length=tokenizer.context_length))
    model.logit_scale.data.fill_(6.0)  # s = 403: the clamp on the log allows it, the cap does not
    for objective, expect in ((CLIP(), 100.0), (SLIP(model_config().rn_width * 4 * 4), math.exp(6.0))):
        batch = PairBatches.for_objective(ShapeCaps(8), tokenizer, 4, objective).batch(0)
        assert math.isclose(encode(model, batch, objective.scale_cap)["scale"].item(), expect, rel_tol=1e-6)


def test_mvs_is_the_mean_of_four_clip_losses():
    i1, i2, t, ta, s = (torch.randn(5, 4), torch.randn(5, 4), torch.randn(5, 4), torch.randn(5, 4),
                        torch.tensor(1.5))
    four = [contrastive_loss(a, b, s) for a in (i1, i2) for b in (t, ta)]
    assert torch.allclose(multi_view_loss([i1, i2], [t, ta], s), sum(four) / 4)


def test_simsiam_stop_gradient_blocks_the_target_branch():
    torch.manual_seed(0)
    head = SimSiam(8, proj_dim=16, pred_dim=4)
    e1, e2 = torch.randn(6, 8, requires_grad=True), torch.randn(6, 8, requires_grad=True)
    z1, z2 = head.projector(e1), head.projector(e2)
    p1, p2 = head.predictor(z1), head.predictor(z2)
    from declip_lite.objectives.simsiam import simsiam_loss
    z2.retain_grad()
    simsiam_loss(p1, p2, z1, z2).backward(retain_graph=True)
    direct = torch.autograd.grad(-0.5 * F.cosine_similarity(p1, z2.detach()).mean(), p1, retain_graph=True)[0]
    assert torch.allclose(direct, torch.autograd.grad(simsiam_loss(p1, p2, z1, z2), p1, retain_graph=True)[0])
    # the gradient into z2 comes only through p2 = predictor(z2), never through the target z2 itself
    g_sg = torch.autograd.grad(simsiam_loss(p1, p2, z1, z2), z2, retain_graph=True)[0]
    g_p2 = torch.autograd.grad(-0.5 * F.cosine_similarity(p2, z1.detach()).mean(), z2, retain_graph=True)[0]
    assert torch.allclose(g_sg, g_p2, atol=1e-7)
    g_no = torch.autograd.grad(simsiam_loss(p1, p2, z1, z2, stop_gradient=False), z2)[0]
    assert not torch.allclose(g_no, g_p2, atol=1e-6)


def test_simsiam_loss_is_minus_one_for_identical_predictions():
    p = torch.randn(4, 5)
    from declip_lite.objectives.simsiam import simsiam_loss
    assert torch.isclose(simsiam_loss(p, p, p, p), torch.tensor(-1.0))


def test_mlm_loss_only_on_masked_positions():
    head = MLMHead(4, 10)
    states = torch.randn(2, 3, 4, requires_grad=True)
    targets = torch.tensor([[IGNORE, 3, IGNORE], [IGNORE, IGNORE, 7]])
    out = head(states, targets)
    logits = head.proj(states)
    expect = F.cross_entropy(torch.stack([logits[0, 1], logits[1, 2]]), torch.tensor([3, 7]))
    assert torch.isclose(out["mlm"], expect)
    out["mlm"].backward()
    assert states.grad[0, 0].abs().sum() == 0 and states.grad[0, 1].abs().sum() > 0


def test_queue_lookup_happens_before_enqueue_and_wraps_fifo():
    q = NNQueue(3, size=4)
    x = F.normalize(torch.randn(3, 3), dim=-1)
    before = q.features.clone()
    feats, sim, _ = q.lookup(x)
    assert all(any(torch.allclose(f, b) for b in before) for f in feats)  # from the old queue
    q.enqueue(x, torch.tensor([10, 11, 12]))
    q.enqueue(x[:2], torch.tensor([13, 14]))  # wraps: slots 3, 0
    assert q.ids.tolist() == [14, 11, 12, 13] and q.ptr.item() == 1
    assert torch.allclose(q.lookup(x[1:2])[0], x[1:2], atol=1e-6)


def test_exclude_self_never_returns_the_same_sample():
    q = NNQueue(3, size=8, exclude_self=True)
    x = F.normalize(torch.randn(4, 3), dim=-1)
    q.enqueue(x, torch.arange(4))
    _, _, ids = q.lookup(x, torch.arange(4))
    assert (ids != torch.arange(4)).all()
    q.exclude_self = False
    assert (q.lookup(x, torch.arange(4))[2] == torch.arange(4)).all()


def test_nns_gradients_reach_images_and_scale_not_texts():
    nns = NNS(4, queue_size=16)
    img = [torch.randn(3, 4, requires_grad=True) for _ in range(2)]
    txt = [torch.randn(3, 4, requires_grad=True) for _ in range(2)]
    scale = torch.tensor(2.0, requires_grad=True)
    out = nns(img, txt, scale)
    out["nns"].backward()
    assert img[0].grad.abs().sum() > 0 and scale.grad is not None
    assert txt[0].grad is None and txt[1].grad is None
    assert nns.queue.ptr.item() == 6


def _encodings(n=6, d=8, width=12, vocab=20, views=("caption", "masked", "eda")):
    g = torch.Generator().manual_seed(0)
    enc = {"image": [{"embed": torch.randn(n, d, generator=g)} for _ in range(2)],
           "text": {v: {"embed": torch.randn(n, d, generator=g),
                        "tokens": torch.randn(n, 5, width, generator=g)}
                    for v in views},
           "scale": torch.tensor(12.0), "ids": torch.arange(n),
           "mlm_targets": torch.where(torch.rand(n, 5, generator=g) < 0.3,
                                      torch.randint(5, vocab, (n, 5), generator=g), IGNORE)}
    return enc


def test_declip_with_only_clip_equals_clip():
    enc = _encodings()
    only = DeCLIP(8, 12, 20, weights={"clip": 1.0, "nns": 0, "simsiam": 0, "mlm": 0}, mvs=False)
    assert only.image_views == 1 and only.text_views == ("caption",)
    assert torch.equal(only(enc)["loss"], CLIP()(enc)["loss"])


def test_declip_sums_its_weighted_terms():
    enc = _encodings()
    torch.manual_seed(0)
    full = DeCLIP(8, 12, 20, queue_size=32).train()
    assert full.image_views == 2 and full.text_views == ("masked", "eda")
    out = full(enc)
    assert {"clip", "nns", "simsiam", "mlm", "mlm_acc", "z_std", "nn_similarity", "nn_self_rate"} <= set(out)
    expect = 0.4 * out["clip"] + 0.2 * out["nns"] + 0.2 * out["simsiam"] + 0.2 * out["mlm"]
    assert torch.isclose(out["loss"], expect)
    t = enc["text"]["masked"]["embed"]
    assert torch.isclose(out["clip"], multi_view_loss([v["embed"] for v in enc["image"]],
                                                      [t, enc["text"]["eda"]["embed"]], enc["scale"]))


def test_nns_enqueues_the_eda_text_first_then_the_caption():
    nns = NNS(4, queue_size=12)
    t, t_aug = F.normalize(torch.randn(3, 4), dim=-1), F.normalize(torch.randn(3, 4), dim=-1)
    nns([torch.randn(3, 4)], [t, t_aug], torch.tensor(10.0))
    assert torch.allclose(nns.queue.features[:3], t_aug) and torch.allclose(nns.queue.features[3:6], t)


def test_every_head_linear_has_a_bias_unless_a_batch_norm_follows():
    from declip_lite.objectives import SLIP
    for head in (SimSiam(8, 16, 4).projector, SimSiam(8, 16, 4).predictor, SLIP(8, 16, 4).head):
        layers = list(head)
        for i, layer in enumerate(layers):
            if isinstance(layer, torch.nn.Linear):
                followed_by_bn = i + 1 < len(layers) and isinstance(layers[i + 1], torch.nn.BatchNorm1d)
                assert (layer.bias is None) == followed_by_bn, (head, i)
    assert SimSiam(8, 16, 4).predictor[-1].bias is not None and SLIP(8, 16, 4).head[-1].bias is not None


def test_queue_age_ranks_slots_from_oldest_to_newest():
    q = NNQueue(3, size=4)
    q.enqueue(torch.randn(2, 3), ids=torch.tensor([10, 11]))
    # wraps: slot 0 now holds 14, slot 1 is oldest (11)
    q.enqueue(torch.randn(3, 3), ids=torch.tensor([12, 13, 14]))
    assert q.age().tolist() == [3, 0, 1, 2]
    assert q.ids[q.age().argsort()].tolist() == [11, 12, 13, 14]
