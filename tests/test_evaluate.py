import torch
import torch.nn.functional as F

from declip_lite.evaluate import class_embeddings, classification_metrics, retrieval, zero_shot_classifier
from declip_lite.models.clip import CLIPModel, model_config


def test_classifier_is_normalise_mean_normalise(tokenizer):
    m = CLIPModel(model_config(vocab_size=tokenizer.vocab_size)).eval()
    templates, names = ["a {}", "there is a {}"], ["star", "ring"]
    got = zero_shot_classifier(m, tokenizer, names, templates)
    with torch.no_grad():
        e = F.normalize(m.encode_text(tokenizer.encode([t.format(n) for n in names
                                                        for t in templates]))["embed"], dim=-1)
    expect = F.normalize(e.view(2, 2, -1).mean(1), dim=-1)
    assert torch.allclose(got, expect, atol=1e-5) and torch.allclose(got.norm(dim=-1), torch.ones(2))


def test_classes_may_have_prompt_lists_of_their_own_lengths(tokenizer):
    m = CLIPModel(model_config(vocab_size=tokenizer.vocab_size)).eval()
    lists = [["one star"], ["two stars", "there are two stars", "two rings"]]
    got = class_embeddings(m, tokenizer, lists)
    with torch.no_grad():
        expect = [F.normalize(F.normalize(m.encode_text(tokenizer.encode(ps))["embed"], dim=-1).mean(0),
                              dim=0)
                  for ps in lists]
    assert torch.allclose(got, torch.stack(expect), atol=1e-5)


def test_classification_metrics_by_hand():
    logits = torch.tensor([[3.0, 1, 0], [0, 2, 1], [0, 2, 1], [1, 0, 5]])
    labels = torch.tensor([0, 1, 2, 2])
    m = classification_metrics(logits, labels, 3)
    assert m["top1"] == 0.75 and m["top5"] == 1.0
    assert abs(m["mean_per_class_recall"] - (1 + 1 + 0.5) / 3) < 1e-6
    assert m["confusion"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]


def test_retrieval_recall_definition():
    e = F.normalize(torch.randn(20, 8), dim=-1)
    perfect = retrieval(e, e)
    assert perfect["image_to_text_R@1"] == 1.0 and perfect["text_to_image_R@1"] == 1.0
    shuffled = retrieval(e, e.roll(1, 0))
    assert shuffled["image_to_text_R@1"] < 0.2 and shuffled["image_to_text_R@10"] <= 1.0
