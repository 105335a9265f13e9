"""What a trained run shows, and its JSON record: zero-shot (global and the objective's own scorer),
one prompt instead of the ensemble, linear probes, transfer to real digits."""
import json

import torch

from ..data.external import sklearn_digits
from ..data.shapecaps import TASKS, make_task
from ..evaluate import TaskEvaluator, image_features, linear_probe, zero_shot, zero_shot_tasks
from .build import commit, hardware
from .records import Record


PROBE_SEED_OFFSET = 500  # linear probes train on other draws of each task than they are tested on


def _with_mean(scores):
    return {**scores, "mean": sum(scores.values()) / len(scores)}


def analyse(run):
    """What a trained model shows beyond its zero-shot table: one prompt instead of the
    ensemble, linear probes, transfer to real handwriting and, for FILIP heads, token-wise
    zero-shot. Also ``run.task_metrics``: each task's full zero-shot metrics (confusion matrix too)."""
    model, tok, p, dev = run.model, run.tokenizer, run.config.data, run.trainer.device
    evaluator = run.trainer.evaluator  # its final evaluation, reused while the weights are the same
    last = (evaluator.last(model) if isinstance(evaluator, TaskEvaluator) and evaluator.tasks is run.tasks
            else None)
    emb, run.task_metrics = last or zero_shot_tasks(model, tok, run.tasks)

    def probe(t, task):  # trained on a fresh draw of the task, tested on the zero-shot images
        train = make_task(t, p.eval_n, run.seed + PROBE_SEED_OFFSET, p.image_size, dev)
        return linear_probe(image_features(model, train.images), train.labels, emb[t], task.labels)["top1"]

    out = {"single_prompt": _with_mean({t: zero_shot(model, tok, task, task.templates[:1],
                                                     image_emb=emb[t])["top1"]
                                        for t, task in run.tasks.items()}),
           "linear_probe": _with_mean({t: probe(t, task) for t, task in run.tasks.items()}),
           "transfer": {"sklearn_digits": zero_shot(model, tok,
                                                    sklearn_digits(p.image_size, dev, p.eval_n))["top1"]}}
    head = run.objective.zero_shot_head
    if head is not None:
        out["zero_shot_filip"] = _with_mean({t: zero_shot(model, tok, task, filip=head)["top1"]
                                             for t, task in run.tasks.items()})
    return out


def result(run):
    """The :class:`Record` of a finished run. ``zero_shot`` is the global cosine's; ``zero_shot_own``
    the objective's own scorer's (FILIP's token-wise one)."""
    last = run.trainer.evals[-1] if run.trainer.evals else {}
    scores = {"zero_shot": {t: last.get(t) for t in [*TASKS, "mean"]}, **analyse(run)}
    scorer = run.objective.zero_shot_scorer
    own = scores["zero_shot_filip"] if scorer == "token-wise" else scores["zero_shot"]
    return Record.from_json(json.loads(json.dumps({  # plain JSON values, as a record read back from its file
        "name": run.name, "method": run.method, "seed": run.seed, "preset": run.config.stored(),
        "options": run.options, "hardware": hardware(run.trainer.device), "commit": commit(),
        "torch": torch.__version__, "train_seconds": run.trainer.train_seconds,
        "pairs_seen": run.trainer.step * run.config.data.batch_size,
        "threads": torch.get_num_threads(), "group_size": run.group_size,
        "recoveries": run.trainer.recoveries,
        "filter_report": run.filter_report, "scorer": scorer, **scores, "zero_shot_own": own,
        "evals": run.trainer.evals})))
