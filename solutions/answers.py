"""Worked answers to every notebook exercise (``declip_lite.exercises``), for instructors and for
after you tried: written as a student would, not copied from the library they are graded against.

    from solutions.answers import ANSWERS
    exercises.check("01.clip_loss", ANSWERS["01.clip_loss"])

Predictions depend on the run, so their entries are functions of what the notebook measured.
"""
from statistics import mean

import torch
import torch.nn.functional as F


def prompts(classnames, templates):  # 00
    return [template.format(name) for name in classnames for template in templates]


def chance(tasks):  # 00: one over the class count
    return {name: 1 / len(task.classnames) for name, task in tasks.items()}


def clip_loss(image, text, scale):  # 01, eq. 1
    image, text = F.normalize(image, dim=-1), F.normalize(text, dim=-1)
    logits = scale * image @ text.T
    labels = torch.arange(len(image))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def simsiam_loss(p1, p2, z1, z2):  # 02
    def d(p, z):
        return -F.cosine_similarity(p, z.detach(), dim=-1).mean()
    return (d(p1, z2) + d(p2, z1)) / 2


def mask_tokens(tokens, tokenizer, p, generator):  # 03: BERT's 80/10/10
    content = torch.ones_like(tokens, dtype=torch.bool)
    for special in tokenizer.special_ids[:4]:  # PAD, SOT, EOT, MASK
        content &= tokens != special
    selected = (torch.rand(tokens.shape, generator=generator) < p) & content
    roll = torch.rand(tokens.shape, generator=generator)
    random_words = torch.randint(len(tokenizer.special_ids), tokenizer.vocab_size, tokens.shape,
                                 generator=generator)
    masked = tokens.clone()
    masked[selected & (roll < 0.8)] = tokenizer.mask_id
    swap = selected & (roll >= 0.8) & (roll < 0.9)
    masked[swap] = random_words[swap]
    targets = torch.full_like(tokens, -100)
    targets[selected] = tokens[selected]
    return masked, targets


def multi_view_loss(images, texts, scale):  # 04: all four (image view, text view) pairs
    losses = [clip_loss(i, t, scale) for i in images for t in texts]
    return sum(losses) / len(losses)


def nn_lookup(queue_features, queue_ids, text, ids):  # 05: the nearest other sample
    cosine = F.normalize(text, dim=-1) @ queue_features.T
    cosine[queue_ids[None, :] == ids[:, None]] = -2.0
    return cosine.argmax(1)


def total_loss(terms, weights):  # 06
    return sum(weights[name] * terms[name] for name in weights)


def paired_interval(baseline, treatment):  # 07: a t interval of the per-seed differences
    from scipy import stats
    d = torch.tensor(treatment) - torch.tensor(baseline)
    half = stats.t.ppf(0.975, len(d) - 1) * d.std().item() / len(d) ** 0.5
    return d.mean().item(), d.mean().item() - half, d.mean().item() + half


def token_wise(x, y):  # 08: each patch's best token, averaged over patches
    return (x @ y.T).max(1).values.mean()


def top1(images, classes, labels):  # 09
    return (images @ classes.T).argmax(1).eq(labels).float().mean().item()


ANSWERS = {"00.prompts": prompts, "01.clip_loss": clip_loss,
           "01.log_b": torch.log(torch.tensor(128.0)).item(), "02.simsiam_loss": simsiam_loss,
           "03.mask_tokens": mask_tokens, "04.multi_view_loss": multi_view_loss,
           "05.nn_lookup": nn_lookup, "06.total_loss": total_loss, "07.paired_interval": paired_interval,
           "08.token_wise": token_wise, "09.top1": top1}
# the predictions: what each notebook's run decides (their keyword arguments to exercises.check)
PREDICTIONS = {
    "00.chance": lambda tasks: chance(tasks),
    "02.shortcut": lambda with_sg, without_sg: "higher" if without_sg - with_sg > 0.02 else "same",
    "03.mlm_helps": lambda clip, clip_mlm: mean(clip_mlm.values()) > mean(clip.values()),
    "04.moco_hurts": lambda scores: max(scores["clip"], key=lambda t: mean(scores["clip"][t].values())
                                        - mean(scores["moco"][t].values())),
    "05.self_rate": lambda self_rate: self_rate > 0.05,
    "06.largest_term": lambda last: max(("clip", "nns", "simsiam", "mlm"), key=lambda k: last[k]),
    "07.verdict": lambda verdict: verdict,
    "08.worse_noise": lambda wrong_attribute, swapped: (
        "swapped" if mean(swapped.values()) < mean(wrong_attribute.values()) else "wrong attribute"),
    "09.skipped": lambda skipped: skipped,
}
