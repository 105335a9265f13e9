"""Zero-shot classification (prompt ensembles, as open_clip), retrieval and metrics as plain dicts."""
import json
import os

import torch
import torch.nn.functional as F


@torch.no_grad()
def _embed(model, encode, inputs, batch_size):
    model.eval()
    dev = next(model.parameters()).device
    out = [encode(inputs[i:i + batch_size].to(dev))["embed"].float() for i in range(0, len(inputs), batch_size)]
    return F.normalize(torch.cat(out), dim=-1)


def image_features(model, images, batch_size=512):
    """L2-normalised image embeddings, in eval mode, in batches on the model's device."""
    return _embed(model, model.encode_image, images, batch_size)


def text_features(model, tokens, batch_size=1024):
    """L2-normalised text embeddings of token ids, in eval mode, in batches."""
    return _embed(model, model.encode_text, tokens, batch_size)


@torch.no_grad()
def zero_shot_classifier(model, tokenizer, classnames, templates):
    """(C, d) class embeddings: normalise each prompt's embedding, mean over templates, normalise."""
    prompts = [t.format(c) for c in classnames for t in templates]
    emb = text_features(model, tokenizer.encode(prompts)).view(len(classnames), len(templates), -1)
    return F.normalize(emb.mean(1), dim=-1)


def classification_metrics(logits, labels, num_classes):
    """top-1, top-5 (top-k capped at the class count), mean per-class recall, confusion matrix."""
    labels = labels.to(logits.device)
    pred = logits.argmax(1)
    top5 = (logits.topk(min(5, num_classes), 1).indices == labels[:, None]).any(1)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    confusion.index_put_((labels.cpu(), pred.cpu()), torch.ones(len(labels), dtype=torch.long), accumulate=True)
    seen = confusion.sum(1) > 0
    recall = confusion.diag()[seen].float() / confusion.sum(1)[seen]
    return {"top1": (pred == labels).float().mean().item(), "top5": top5.float().mean().item(),
            "mean_per_class_recall": recall.mean().item(), "n": len(labels), "confusion": confusion.tolist()}


def zero_shot(model, tokenizer, task, templates=None):
    """Zero-shot metrics of ``model`` on a :class:`ZeroShotTask`; ``templates`` overrides the task's."""
    classifier = zero_shot_classifier(model, tokenizer, task.classnames, templates or task.templates)
    logits = image_features(model, task.images) @ classifier.T
    return {"task": task.name, "classnames": task.classnames, **classification_metrics(logits, task.labels, len(task.classnames))}


def evaluate_tasks(model, tokenizer, tasks):
    """{task: top-1} for every task plus their mean; the compact form the Trainer logs."""
    scores = {name: zero_shot(model, tokenizer, task)["top1"] for name, task in tasks.items()}
    return {**scores, "mean": sum(scores.values()) / len(scores)}


def retrieval(image_emb, text_emb, ks=(1, 5, 10)):
    """Recall@K for N paired, normalised embeddings: the share of queries whose own pair ranks in
    the top K of all N candidates (image->text and text->image)."""
    sim = image_emb @ text_emb.T
    own = torch.arange(len(sim), device=sim.device)
    out = {}
    for name, s in (("image_to_text", sim), ("text_to_image", sim.T)):
        rank = (s > s[own, own][:, None]).sum(1)  # how many candidates beat the true pair
        out.update({f"{name}_R@{k}": (rank < k).float().mean().item() for k in ks})
    return out


def save_json(result, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, path)


@torch.no_grad()
def fill_masks(model, mlm_head, tokenizer, tokens, k=3):
    """The MLM head's top-``k`` words at every <mask>: [(row, position, [(word, prob), ...]), ...]."""
    model.eval()
    dev = next(model.parameters()).device
    tokens = tokens.to(dev)
    probs = mlm_head.proj(model.encode_text(tokens)["tokens"]).float().softmax(-1)
    rows, cols = (tokens == tokenizer.mask_id).nonzero(as_tuple=True)
    top = probs[rows, cols].topk(k, -1)
    return [(r, c, [(tokenizer.words[i], p) for i, p in zip(ids, ps)])
            for r, c, ids, ps in zip(rows.tolist(), cols.tolist(), top.indices.tolist(), top.values.tolist())]
