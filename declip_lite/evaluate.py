"""Zero-shot classification (prompt ensembles, as open_clip; or FILIP's token-wise scores),
linear probes, retrieval and metrics as plain dicts."""

import torch
import torch.nn.functional as F

from .objectives.filip import token_wise_logits


@torch.no_grad()
def _embed(model, encode, inputs, batch_size):
    model.eval()
    dev = next(model.parameters()).device
    out = [encode(inputs[i:i + batch_size].to(dev))["embed"].float()
           for i in range(0, len(inputs), batch_size)]
    return F.normalize(torch.cat(out), dim=-1)


def image_features(model, images, batch_size=512):
    """L2-normalised image embeddings, in eval mode, in batches on the model's device."""
    return _embed(model, model.encode_image, images, batch_size)


def text_features(model, tokens, batch_size=1024):
    """L2-normalised text embeddings of token ids, in eval mode, in batches."""
    return _embed(model, model.encode_text, tokens, batch_size)


def prompts(classnames, templates):
    """Every template filled with every class name, class by class: C x len(templates) prompts."""
    return [t.format(c) for c in classnames for t in templates]


@torch.no_grad()
def class_embeddings(model, tokenizer, class_prompts):
    """(C, d) from each class's list of prompts: normalise each prompt's embedding, mean, normalise."""
    emb = text_features(model, tokenizer.encode([p for ps in class_prompts for p in ps]))
    return F.normalize(torch.stack([e.mean(0) for e in emb.split([len(ps) for ps in class_prompts])]), dim=-1)


def zero_shot_classifier(model, tokenizer, classnames, templates):
    """(C, d) class embeddings of a prompt ensemble: every template filled with each class name."""
    return class_embeddings(model, tokenizer, [prompts([c], templates) for c in classnames])


def classification_metrics(logits, labels, num_classes):
    """top-1, top-5 (top-k capped at the class count), mean per-class recall, confusion matrix;
    computed on the CPU after one copy (a device sync per metric would wait on a busy GPU)."""
    logits, labels = logits.float().cpu(), labels.cpu()
    pred = logits.argmax(1)
    top5 = (logits.topk(min(5, num_classes), 1).indices == labels[:, None]).any(1)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    confusion.index_put_((labels, pred), torch.ones(len(labels), dtype=torch.long), accumulate=True)
    seen = confusion.sum(1) > 0
    recall = confusion.diag()[seen].float() / confusion.sum(1)[seen]
    return {"top1": (pred == labels).float().mean().item(), "top5": top5.float().mean().item(),
            "mean_per_class_recall": recall.mean().item(), "n": len(labels), "confusion": confusion.tolist()}


@torch.no_grad()
def token_wise_scores(model, filip, tokenizer, images, classnames, templates, batch_size=64):
    """(N, C) FILIP zero-shot logits: the image->prompt late interaction (mean over all patches
    of the best valid prompt token), averaged over templates. No top-k: that is a training saving."""
    model.eval()
    filip.eval()
    dev = next(model.parameters()).device
    tokens = tokenizer.encode(prompts(classnames, templates)).to(dev)
    y = F.normalize(filip.text_proj(model.encode_text(tokens)["tokens"].float()), dim=-1)
    valid, out = tokens != 0, []
    for i in range(0, len(images), batch_size):
        x = F.normalize(filip.image_proj(model.encode_image(images[i:i + batch_size].to(dev))["tokens"]
                                         .float()), dim=-1)
        i2t, _ = token_wise_logits(x, y, torch.ones(x.shape[:2], dtype=torch.bool, device=dev), valid, 1.0)
        out.append(i2t.view(len(x), len(classnames), len(templates)).mean(2))
    return torch.cat(out)


@torch.no_grad()
def word_patch_similarity(model, filip, tokenizer, image, caption):
    """FILIP's alignment for one pair: the caption's words and their (T, N) cosine to every patch."""
    model.eval()
    filip.eval()
    dev = next(model.parameters()).device
    tokens = tokenizer.encode([caption]).to(dev)
    valid = (tokens[0] != 0) & (tokens[0] != tokenizer.sot_id) & (tokens[0] != model.config.eot_id)
    y = F.normalize(filip.text_proj(model.encode_text(tokens)["tokens"][0, valid].float()), dim=-1)
    x = F.normalize(filip.image_proj(model.encode_image(image[None].to(dev))["tokens"][0].float()), dim=-1)
    return [tokenizer.words[i] for i in tokens[0, valid].tolist()], y @ x.T


def zero_shot(model, tokenizer, task, templates=None, filip=None, image_emb=None, class_prompts=None):
    """Zero-shot metrics of ``model`` on a :class:`ZeroShotTask`; ``templates`` overrides the task's,
    ``class_prompts`` (one list of prompts per class) both. With a ``filip`` head (a :class:`FILIP`),
    classes are scored token-wise instead of globally. ``image_emb``: the task's image embeddings."""
    templates = templates or task.templates
    if filip is None:
        image_emb = image_features(model, task.images) if image_emb is None else image_emb
        classes = (class_embeddings(model, tokenizer, class_prompts) if class_prompts
                   else zero_shot_classifier(model, tokenizer, task.classnames, templates))
        logits = image_emb @ classes.T
    else:
        logits = token_wise_scores(model, filip, tokenizer, task.images, task.classnames, templates)
    return {"task": task.name, "classnames": task.classnames,
            **classification_metrics(logits, task.labels, len(task.classnames))}


def fit_logistic(features, labels, c, iterations=50):
    """Multinomial logistic regression on ``features`` (N, d), fitted in torch where they are:
    scikit-learn's objective, C x the summed log-loss + ||W||^2 / 2 (the bias free), scaled by
    1/(C N), minimised with L-BFGS (50 iterations: top-1 within 0.001 of scikit-learn's 2,000 on
    image-like features, ``tests/test_reproduce.py``). ``c`` may be a tuple: one independent fit per
    value, all in one batched problem. Returns (weights (len(c), d, K), biases (len(c), K))."""
    x, y = features.float(), labels.to(features.device)
    cs = torch.tensor(c if isinstance(c, (tuple, list)) else (c,), device=x.device, dtype=torch.float32)
    classes, n = int(y.max()) + 1, len(x)
    w = torch.zeros(len(cs), x.shape[1], classes, device=x.device, requires_grad=True)
    b = torch.zeros(len(cs), classes, device=x.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], lr=1, max_iter=iterations, tolerance_grad=1e-6,
                                  tolerance_change=1e-9, history_size=20, line_search_fn="strong_wolfe")

    def objective():
        optimizer.zero_grad()
        logits = torch.einsum("nd,cdk->cnk", x, w) + b[:, None]
        log_loss = F.cross_entropy(logits.flatten(0, 1), y.repeat(len(cs)), reduction="none").view(len(cs), n)
        loss = (log_loss.mean(1) + (w ** 2).sum((1, 2)) / (2 * cs * n)).sum()
        loss.backward()
        return loss

    optimizer.step(objective)
    return w.detach(), b.detach()


def _probe_accuracy(w, b, features, labels):
    """(len(w),) top-1 of each fitted probe on ``features``."""
    logits = torch.einsum("nd,cdk->cnk", features.float(), w) + b[:, None]
    return (logits.argmax(-1) == labels.to(features.device)).float().mean(1)


def linear_probe(features, labels, test_features, test_labels, cs=(0.1, 1.0, 10.0, 100.0)):
    """Top-1 of a logistic regression (:func:`fit_logistic`) on frozen features, e.g. ``image_features``.

    The inverse regularisation ``C`` is picked on a held-out fifth of the training features (the
    first best on a tie), then the probe is refitted on all of them and scored on the test features.
    The fit runs on the CPU (features of a few thousand images: 0.1 s on one core), since L-BFGS
    reads the host at every iteration and each read would wait its turn on a shared GPU."""
    features, labels, test_features, test_labels = (t.cpu() for t in
                                                    (features, labels, test_features, test_labels))
    cut = len(features) * 4 // 5
    held_out = _probe_accuracy(*fit_logistic(features[:cut], labels[:cut], cs), features[cut:], labels[cut:])
    best = cs[int(held_out.argmax())]
    return {"top1": float(_probe_accuracy(*fit_logistic(features, labels, best), test_features,
                                          test_labels)[0]),
            "C": best}


def zero_shot_tasks(model, tokenizer, tasks):
    """({task: image embeddings}, {task: :func:`zero_shot` metrics}): each task's images encoded once."""
    emb = {t: image_features(model, task.images) for t, task in tasks.items()}
    return emb, {t: zero_shot(model, tokenizer, task, image_emb=emb[t]) for t, task in tasks.items()}


def top1_and_mean(metrics):
    """{task: top-1} of each task's metrics, plus their mean; the compact form the Trainer logs."""
    scores = {t: m["top1"] for t, m in metrics.items()}
    return {**scores, "mean": sum(scores.values()) / len(scores)}


def evaluate_tasks(model, tokenizer, tasks):
    """{task: top-1} for every task plus their mean (:func:`top1_and_mean`)."""
    return top1_and_mean(zero_shot_tasks(model, tokenizer, tasks)[1])


class TaskEvaluator:
    """:func:`evaluate_tasks` as a Trainer's evaluator, which keeps its last evaluation
    (:func:`zero_shot_tasks`) with a copy of the weights it came from. ``last(model)`` gives it back
    while the weights still equal that copy, so that a run's analysis does not encode its tasks twice."""

    def __init__(self, tokenizer, tasks):
        self.tokenizer, self.tasks, self._last = tokenizer, tasks, None

    def __call__(self, model):
        emb, metrics = zero_shot_tasks(model, self.tokenizer, self.tasks)
        self._last = [w.detach().clone() for w in model.state_dict().values()], emb, metrics
        return top1_and_mean(metrics)

    def last(self, model):
        """(image embeddings, metrics) of the last evaluation if ``model``'s weights are still those;
        else None."""
        if self._last is None:
            return None
        weights, emb, metrics = self._last
        now = list(model.state_dict().values())
        same = len(now) == len(weights) and all(torch.equal(a, b) for a, b in zip(now, weights))
        return (emb, metrics) if same else None


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
