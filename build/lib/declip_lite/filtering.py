"""Data cleaning by a model's own scores, as web-scale sets are cleaned (YFCC15M V1 -> V2).

A CLIP model trained on *other* pairs (here: another noisy draw of ShapeCaps) scores every pair
by the cosine of its image and caption. Pairs that look no better than certainly mismatched
ones (an image with the next pair's caption) are dropped: a pair is kept when its score beats
the ``quantile`` of mismatched scores. A model never scores the pairs it trained on, since
after many epochs it has memorised their noise.
"""
import torch

from .evaluate import image_features, text_features


@torch.no_grad()
def pair_scores(model, tokenizer, dataset, batch_size=1024):
    """(own, mismatched): cosine of every image with its caption and with the next pair's."""
    index = torch.arange(len(dataset))
    images = torch.cat([image_features(model, dataset.images(index[i:i + batch_size]))
                        for i in range(0, len(index), batch_size)])
    texts = text_features(model, tokenizer.encode(dataset.captions(index)))
    return (images * texts).sum(1), (images * texts.roll(1, 0)).sum(1)


def separation(clean_scores, noisy_scores):
    """The chance that a clean pair outscores a noisy one, ties counting half (ROC AUC, by ranks:
    no N × N matrix): 1 sorts them perfectly, 0.5 is blind."""
    from sklearn.metrics import roc_auc_score

    scores = torch.cat([clean_scores, noisy_scores]).float().cpu().numpy()
    return float(roc_auc_score([1] * len(clean_scores) + [0] * len(noisy_scores), scores))


def keep_matched(model, tokenizer, dataset, quantile=0.9):
    """Indices of the pairs ``model`` scores above the ``quantile`` of mismatched pairs, and a
    report (kept share; with a dataset that knows its noise, the noise share before and after
    and how well the scores separate clean pairs from noisy ones)."""
    if not 0 < quantile < 1:
        raise ValueError(f"keep_matched: quantile={quantile!r} must be in (0, 1)")
    own, mismatched = pair_scores(model, tokenizer, dataset)
    threshold = mismatched.float().quantile(quantile)
    keep = (own > threshold).nonzero()[:, 0].cpu()
    report = {"threshold": threshold.item(), "kept": len(keep) / len(dataset)}
    if hasattr(dataset, "noisy") and len(keep):
        noisy = dataset.noisy(torch.arange(len(dataset))).cpu()
        report.update(noise_before=noisy.float().mean().item(), noise_after=noisy[keep].float().mean().item())
        if 0 < noisy.sum() < len(noisy):
            report["separation"] = separation(own.cpu()[~noisy], own.cpu()[noisy])
    return keep, report
