"""What a trained run shows, and its JSON record: zero-shot (global and the objective's own scorer),
one prompt instead of the ensemble, linear probes, transfer to real digits; and mean ± std over seeds."""
import json
from dataclasses import asdict

import torch

from ..data.external import sklearn_digits
from ..data.shapecaps import TASKS, make_task
from ..evaluate import image_features, linear_probe, zero_shot
from .build import hardware


PROBE_SEED_OFFSET = 500  # linear probes train on other draws of each task than they are tested on


def _with_mean(scores):
    return {**scores, "mean": sum(scores.values()) / len(scores)}


def analyse(run):
    """What a trained model shows beyond its zero-shot table: one prompt instead of the
    ensemble, linear probes, transfer to real handwriting and, for FILIP heads, token-wise
    zero-shot."""
    model, tok, p, dev = run.model, run.tokenizer, run.preset, run.trainer.device
    emb = {t: image_features(model, task.images) for t, task in run.tasks.items()}  # each task encoded once

    def probe(t, task):  # trained on a fresh draw of the task, tested on the zero-shot images
        train = make_task(t, p.eval_n, run.seed + PROBE_SEED_OFFSET, p.image_size, dev)
        return linear_probe(image_features(model, train.images), train.labels, emb[t], task.labels)["top1"]

    out = {"single_prompt": _with_mean({t: zero_shot(model, tok, task, task.templates[:1], image_emb=emb[t])["top1"]
                                        for t, task in run.tasks.items()}),
           "linear_probe": _with_mean({t: probe(t, task) for t, task in run.tasks.items()}),
           "transfer": {"sklearn_digits": zero_shot(model, tok, sklearn_digits(p.image_size, dev, p.eval_n))["top1"]}}
    head = run.objective.zero_shot_head
    if head is not None:
        out["zero_shot_filip"] = _with_mean({t: zero_shot(model, tok, task, filip=head)["top1"]
                                             for t, task in run.tasks.items()})
    return out


def result(run):
    """The JSON record of a finished run (plain JSON data: lists, not tuples). ``zero_shot`` is the
    global cosine's; ``zero_shot_own`` the objective's own scorer's (FILIP's token-wise one)."""
    last = run.trainer.evals[-1] if run.trainer.evals else {}
    scores = {"zero_shot": {t: last.get(t) for t in [*TASKS, "mean"]}, **analyse(run)}
    scorer = run.objective.zero_shot_scorer
    own = scores["zero_shot_filip"] if scorer == "token-wise" else scores["zero_shot"]
    return json.loads(json.dumps({"name": run.name, "method": run.method, "seed": run.seed, "preset": asdict(run.preset), "options": run.options,
            "hardware": hardware(run.trainer.device), "train_seconds": run.seconds,
            "pairs_seen": run.trainer.step * run.preset.batch_size, "filter_report": run.filter_report,
            "recoveries": run.trainer.recoveries, **scores, "scorer": scorer, "zero_shot_own": own,
            "evals": run.trainer.evals, "torch": torch.__version__}))


def summarise(records, field="zero_shot"):
    """Group run records (``result`` dicts) by everything but the seed; mean and std over seeds
    of each entry of ``records[i][field]`` (zero_shot, linear_probe, single_prompt, ...).

    Returns rows {method, pairs, steps, encoder, augmentation, objective, options, seeds, <key>: (mean, std)}."""
    groups, seen = {}, set()
    for r in records:
        if not r.get(field) or r.get("name", id(r)) in seen:  # a run listed by two grids counts once
            continue
        seen.add(r.get("name", id(r)))
        key = json.dumps([r["method"], r["preset"], r.get("options") or {}], sort_keys=True)
        groups.setdefault(key, []).append(r[field])
    rows = []
    for key, scores in groups.items():
        method, preset, options = json.loads(key)
        t = torch.tensor([[z[k] for k in scores[0]] for z in scores], dtype=torch.float64)
        std = t.std(0) if len(scores) > 1 else torch.zeros(t.shape[1], dtype=torch.float64)
        rows.append({"method": method, "pairs": preset["pairs"], "steps": preset["steps"], "encoder": preset["model"],
                     "augmentation": options.get("augmentation"), "objective": options.get("objective"),
                     "options": options, "seeds": len(scores),
                     **{k: (m, sd) for k, m, sd in zip(scores[0], t.mean(0).tolist(), std.tolist())}})
    return rows
