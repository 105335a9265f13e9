import dataclasses
import math

import pytest
import torch

from declip_lite.models.clip import CLIPModel, model_config


@pytest.mark.parametrize("name", ["rn-tiny", "vit-tiny"])
@pytest.mark.parametrize("size", [32, 64])
def test_towers_expose_tokens_pooled_and_embed(name, size):
    cfg = model_config(name, vocab_size=50, image_size=size)
    m = CLIPModel(cfg)
    img = m.encode_image(torch.rand(3, 3, size, size))
    assert (img["embed"].shape == (3, cfg.embed_dim) and img["tokens"].ndim == 3
            and img["pooled"].shape[0] == 3)
    txt = m.encode_text(torch.tensor([[1, 7, 8, 2, 0, 0]] * 3))
    assert txt["embed"].shape == (3, cfg.embed_dim) and txt["tokens"].shape == (3, 6, cfg.text_width)
    assert math.isclose(m.logit_scale.item(), math.log(1 / 0.07), rel_tol=1e-6)


def test_causal_text_feature_ignores_tokens_after_eot():
    m = CLIPModel(model_config(vocab_size=50)).eval()
    a = m.encode_text(torch.tensor([[1, 7, 8, 2, 0, 0]]))["embed"]
    b = m.encode_text(torch.tensor([[1, 7, 8, 2, 9, 9]]))["embed"]
    c = m.encode_text(torch.tensor([[1, 7, 9, 2, 0, 0]]))["embed"]
    assert torch.allclose(a, b, atol=1e-6) and not torch.allclose(a, c)


def test_bidirectional_text_sees_the_right_context():
    m = CLIPModel(model_config(vocab_size=50, causal=False)).eval()
    s1 = m.encode_text(torch.tensor([[1, 7, 8, 2]]))["tokens"][0, 1]
    s2 = m.encode_text(torch.tensor([[1, 7, 9, 2]]))["tokens"][0, 1]
    assert not torch.allclose(s1, s2)


@pytest.mark.parametrize("name", ["rn50", "vit-b32"])
def test_full_size_reference_configs_construct(name):
    m = CLIPModel(model_config(name))
    n = sum(p.numel() for p in m.parameters()) / 1e6
    assert 60 < n < 160  # RN50 ~102 M, ViT-B/32 ~151 M with the CLIP text tower
    if name == "vit-b32":
        assert not m.visual.patch_embedding.weight.requires_grad  # the reference's frozen stem


def test_gradients_reach_both_towers():
    m = CLIPModel(model_config(vocab_size=50))
    loss = (m.encode_image(torch.rand(2, 3, 32, 32))["embed"].sum()
            + m.encode_text(torch.tensor([[1, 5, 2]] * 2))["embed"].sum())
    loss.backward()
    assert m.visual.stem[0].weight.grad.abs().sum() > 0 and m.text.token_embedding.weight.grad.abs().sum() > 0


def test_bad_config_and_inputs_are_named():
    with pytest.raises(ValueError, match="unknown config"):
        model_config("rn-huge")
    with pytest.raises(TypeError, match="widthh"):
        model_config("rn-tiny", widthh=3)
    m = CLIPModel(model_config(vocab_size=50))
    with pytest.raises(ValueError, match="encode_image"):
        m.encode_image(torch.rand(2, 32, 32))
    with pytest.raises(ValueError, match="context length"):
        m.encode_text(torch.ones(1, 99, dtype=torch.long))


def test_old_scalar_shape_checkpoint_loads():
    m = CLIPModel(model_config(vocab_size=50))
    state = m.state_dict()
    state["logit_scale"] = torch.tensor([4.0])
    m.load_state_dict(state)
    assert m.logit_scale.shape == () and m.logit_scale.item() == 4.0


def test_vit_patch_tokens_come_before_the_final_layer_norm_and_the_class_state_after():
    m = CLIPModel(model_config("vit-tiny")).eval()
    v, images = m.visual, torch.rand(2, 3, 32, 32)
    x = v.patch_embedding(images).flatten(2).transpose(1, 2)
    x = v.transformer(v.ln_pre(torch.cat([v.class_embedding.expand(2, 1, -1), x], 1)
                               + v.positional_embedding))
    out = m.encode_image(images)
    assert (torch.allclose(out["tokens"], x[:, 1:])
            and torch.allclose(out["embed"], v.ln_post(x[:, 0]) @ v.proj))


def test_the_attention_pool_maps_straight_from_attention_to_the_embedding_as_clip_does():
    c = model_config("rn-tiny")
    pool, width = CLIPModel(c).visual.attnpool, 256  # rn-tiny's last stage: 16 x 2^2 x 4 channels
    tokens = pool.pos.shape[0]
    # pos, q/k/v, out
    expected = tokens * width + 3 * (width * width + width) + width * c.embed_dim + c.embed_dim
    assert sum(p.numel() for p in pool.parameters()) == expected
    x = torch.randn(2, tokens - 1, width)  # against torch's own multi-head attention with the same weights
    mha = torch.nn.MultiheadAttention(width, c.rn_heads, batch_first=True, bias=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([pool.q.weight, pool.k.weight, pool.v.weight]))
        mha.in_proj_bias.copy_(torch.cat([pool.q.bias, pool.k.bias, pool.v.bias]))
        mha.out_proj.weight.copy_(torch.eye(width))
        mha.out_proj.bias.zero_()
    seq = torch.cat([x.mean(1, keepdim=True), x], 1) + pool.pos
    assert torch.allclose(pool(x), pool.out(mha(seq[:, :1], seq, seq, need_weights=False)[0][:, 0]),
                          atol=1e-5)


def test_quick_gelu_towers_compute_x_sigmoid_1702x_and_differ_from_gelu_only_there():
    torch.manual_seed(0)
    gelu = CLIPModel(model_config("vit-tiny", vocab_size=50))
    torch.manual_seed(0)
    quick = CLIPModel(model_config("vit-tiny", vocab_size=50, activation="quick_gelu"))
    assert all(torch.equal(p, q) for p, q in zip(gelu.parameters(), quick.parameters()))  # the same weights
    block, x = quick.text.transformer.blocks[0], torch.randn(2, 5, 96)
    hidden = block.mlp[0](x)
    by_hand = block.mlp[2](hidden * torch.sigmoid(1.702 * hidden))  # QuickGELU, written out
    assert torch.allclose(block.mlp(x), by_hand, atol=1e-6)
    images, tokens = torch.rand(2, 3, 32, 32), torch.tensor([[1, 7, 8, 2, 0, 0]] * 2)
    for encode, inputs in ((CLIPModel.encode_image, images), (CLIPModel.encode_text, tokens)):
        assert not torch.allclose(encode(gelu, inputs)["embed"], encode(quick, inputs)["embed"])
    with pytest.raises(ValueError, match="activation='relu'"):
        CLIPModel(model_config("rn-tiny", vocab_size=50, activation="relu"))


def test_a_text_projection_bias_is_added_to_the_eot_feature_and_older_checkpoints_still_load():
    from declip_lite.models.clip import same_model

    torch.manual_seed(0)
    model = CLIPModel(model_config("rn-tiny", vocab_size=50, text_proj_bias=True))
    with torch.no_grad():
        model.text.proj_bias.copy_(torch.arange(64.0))
    tokens = torch.tensor([[1, 7, 8, 2, 0, 0], [1, 9, 2, 0, 0, 0]])
    out = model.encode_text(tokens)
    eot = [3, 2]  # the EOT positions, found by hand
    by_hand = torch.stack([out["tokens"][b, eot[b]] @ model.text.proj for b in range(2)]) + torch.arange(64.0)
    assert torch.allclose(out["embed"], by_hand, atol=1e-5)
    assert "text.proj_bias" not in CLIPModel(model_config("rn-tiny", vocab_size=50)).state_dict()
    older = {k: v for k, v in dataclasses.asdict(model_config("rn-tiny")).items() if k != "text_proj_bias"}
    assert same_model(older, model_config("rn-tiny")) and not same_model(older, model.config)
