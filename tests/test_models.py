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
    assert img["embed"].shape == (3, cfg.embed_dim) and img["tokens"].ndim == 3 and img["pooled"].shape[0] == 3
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
    loss = m.encode_image(torch.rand(2, 3, 32, 32))["embed"].sum() + m.encode_text(torch.tensor([[1, 5, 2]] * 2))["embed"].sum()
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
