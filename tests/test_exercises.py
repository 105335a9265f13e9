"""Every exercise checker, called with a right answer (it passes), a wrong one (it fails, with a
hint that says what is wrong) and no answer (not attempted): no checker is a rubber stamp."""
import json
import pathlib
import re

import pytest
import torch
import torch.nn.functional as F

from declip_lite import exercises
from declip_lite.data.shapecaps import make_tasks
from solutions.answers import ANSWERS, PREDICTIONS

ROOT = pathlib.Path(__file__).resolve().parents[1]
TASKS = make_tasks(n=8, seed=0, image_size=32)
# what a notebook would have measured, for the prediction exercises
MEASURED = {
    "00.chance": dict(tasks=TASKS),
    "02.shortcut": dict(with_sg=0.934, without_sg=0.991),
    "03.mlm_helps": dict(clip={0: 0.61, 1: 0.60, 2: 0.62}, clip_mlm={0: 0.58, 1: 0.57, 2: 0.585}),
    "04.moco_hurts": dict(scores={"clip": {"shape": {0: 0.5, 1: 0.52, 2: 0.49},
                                           "position": {0: 0.9, 1: 0.92, 2: 0.88}},
                                  "moco": {"shape": {0: 0.45, 1: 0.48, 2: 0.46},
                                           "position": {0: 0.4, 1: 0.45, 2: 0.38}}}),
    "05.self_rate": dict(self_rate=0.3),
    "06.largest_term": dict(last={"clip": 1.2, "nns": 2.5, "simsiam": -0.9, "mlm": 1.0}),
    "07.verdict": dict(verdict="reproduced"),
    "08.worse_noise": dict(wrong_attribute={0: 0.5, 1: 0.52, 2: 0.49}, swapped={0: 0.3, 1: 0.31, 2: 0.29}),
    "09.skipped": dict(skipped=2),
}


def not_written(*args):
    ...  # the placeholder a notebook's exercise cell holds


def all_masked(tokens, tokenizer, p, generator):
    """Every selected word becomes MASK (no 10 % random, no 10 % kept)."""
    selected = ((torch.rand(tokens.shape, generator=generator) < p)
                & ~torch.isin(tokens, torch.tensor(tokenizer.special_ids[:4])))
    return torch.where(selected, tokenizer.mask_id, tokens), torch.where(selected, tokens, -100)


# a typical mistake per exercise, and a word its hint must contain
WRONG = {
    "00.prompts": (lambda names, templates: [t.format(n) for t in templates for n in names], "order"),
    "00.chance": ({name: 0.5 for name in TASKS}, "number of classes"),
    "01.clip_loss": (lambda i, t, s: F.cross_entropy(s * F.normalize(i, dim=-1) @ F.normalize(t, dim=-1).T,
                                                   torch.arange(len(i))), "both directions"),
    "01.log_b": (1.0, "log B"),
    "02.simsiam_loss": (lambda p1, p2, z1, z2: -0.5 * (F.cosine_similarity(p1, z2).mean()
                                                       + F.cosine_similarity(p2, z1).mean()), "detach"),
    "02.shortcut": ("same", "measured"),
    "03.mask_tokens": (lambda tokens, tok, p, g: all_masked(tokens, tok, p, g), "80 %"),
    "03.mlm_helps": (True, "measured"),
    "04.multi_view_loss": (lambda images, texts, s: (ANSWERS["01.clip_loss"](images[0], texts[0], s)
                                                     + ANSWERS["01.clip_loss"](images[1], texts[1], s)) / 2,
                           "four"),
    "04.moco_hurts": ("shape", "measured"),
    "05.nn_lookup": (lambda feats, qids, text, ids: (F.normalize(text, dim=-1) @ feats.T).argmax(1),
                     "own id"),
    "05.self_rate": (False, "measured"),
    "06.total_loss": (lambda terms, weights: sum(terms.values()), "library gives"),
    "06.largest_term": ("clip", "measured"),
    "07.paired_interval": (lambda a, b: (0.0, -1.0, 1.0), "library gives"),
    "07.verdict": ("inconclusive", "measured"),
    "08.token_wise": (lambda x, y: (x @ y.T).max(0).values.mean(), "text->image"),
    "08.worse_noise": ("wrong attribute", "measured"),
    "09.top1": (lambda images, classes, labels: 0.25, "library gives"),
    "09.skipped": (0, "skipped 2"),
}


def right_answer(name):
    return ANSWERS[name] if name in ANSWERS else PREDICTIONS[name](**MEASURED[name])


@pytest.mark.parametrize("name", sorted(exercises.EXERCISES))
def test_a_right_answer_passes_a_wrong_one_gets_its_hint_and_none_is_not_attempted(name):
    measured = MEASURED.get(name, {})
    assert exercises.check(name, right_answer(name), **measured).passed, (
        exercises.check(name, right_answer(name), **measured))
    wrong, hint = WRONG[name]
    verdict = exercises.check(name, wrong, **measured)
    assert verdict.status == "wrong" and hint in verdict.message, verdict
    assert exercises.check(name, None, **measured).status == "not attempted"
    if callable(wrong):  # a function whose body is still `...` returns None
        assert exercises.check(name, not_written, **measured).status == "not attempted"


@pytest.mark.parametrize("name, answers, baseline, treatment", [
    ("03.mlm_helps", (True, False), "clip", "clip_mlm"),
    ("08.worse_noise", ("swapped", "wrong attribute"), "wrong_attribute", "swapped"),
])
def test_a_prediction_the_seeds_cannot_decide_accepts_every_answer(name, answers, baseline, treatment):
    one_seed = {baseline: {0: 0.61}, treatment: {0: 0.58}}  # a run's difference, but no interval
    overlapping = {baseline: {0: 0.61, 1: 0.55, 2: 0.60}, treatment: {0: 0.58, 1: 0.60, 2: 0.59}}
    for measured, why in ((one_seed, "one seed a side gives no interval"), (overlapping, "95 % interval")):
        for answer in answers:
            verdict = exercises.check(name, answer, **measured)
            assert (verdict.passed and "either answer stands" in verdict.message
                    and why in verdict.message), verdict
        assert exercises.check(name, "maybe", **measured).status == "wrong"


def test_one_seed_cannot_name_the_task_moco_hurts_most_but_rules_out_one_that_rose():
    scores = {"clip": {"shape": {0: 0.5}, "position": {0: 0.9}, "count": {0: 0.6}},
              "moco": {"shape": {0: 0.45}, "position": {0: 0.4}, "count": {0: 0.7}}}
    for answer in ("shape", "position"):
        verdict = exercises.check("04.moco_hurts", answer, scores=scores)
        assert verdict.passed and "cannot rule out 1 other task" in verdict.message, verdict
    rose = exercises.check("04.moco_hurts", "count", scores=scores)
    assert rose.status == "wrong" and "it rose (+0.100)" in rose.message, rose
    assert exercises.check("04.moco_hurts", "colour", scores=scores).status == "wrong"


def test_an_answer_that_raises_is_wrong_with_the_error_and_an_unknown_exercise_is_named():
    def broken(*args):
        raise IndexError("row 3")
    verdict = exercises.check("01.clip_loss", broken)
    assert verdict.status == "wrong" and "IndexError: row 3" in verdict.message and "✗" in repr(verdict)
    with pytest.raises(KeyError, match="no exercise '01.nope'"):
        exercises.check("01.nope", None)


def test_every_notebook_has_two_exercises_and_every_exercise_sits_in_its_notebook():
    found = {}
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        code = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                       if c["cell_type"] == "code")
        names = re.findall(r'exercises\.check\("([0-9]{2}\.\w+)"', code)
        assert len(set(names)) >= 2, f"{path.name}: {names}"
        assert all(n.startswith(path.name[:2]) for n in names), (path.name, names)
        assert "solutions" not in code  # the answers are never pre-filled
        found.update(dict.fromkeys(names))
    assert set(found) == set(exercises.EXERCISES)


# the answers that notebooks 03, 04 and 08 say their predictions accept on the shipped cpu records, over the
# seeds they compare (every answer: the intervals cannot decide, and the notebook says so)
SHIPPED_ACCEPTS = {"03.mlm_helps": {True, False}, "08.worse_noise": {"swapped"},
                   "04.moco_hurts": {"shape", "size", "position", "count", "digit", "composition"}}


def test_each_prediction_comes_out_on_the_shipped_cpu_records_as_its_notebook_says():
    from declip_lite import grids
    from declip_lite.runs import shipped

    scale = grids.SCALES["cpu"]
    configs = [c for s in scale.notebook_seeds for c in grids.notebook_runs("cpu", s)]
    records = shipped.records(list(dict.fromkeys(configs + grids.grid("data-quality", "cpu"))),
                              str(ROOT / "results" / "cpu"), runs_dir=None)  # read, never trained
    small = records.where(pairs=2000, steps=1200)
    noisiest = max(scale.noise_levels)
    measured = {
        "03.mlm_helps": dict(clip=small.where(method="clip", noise=[0.0, 0.0]).summarise().one(),
                             clip_mlm=small.where(method="clip+tss").summarise().one()),
        "04.moco_hurts": dict(scores={views: {t: {r.seed: r.zero_shot[t] for r in rows}
                                              for t in rows[0].zero_shot if t != "mean"}
                                      for views, rows in ((v, small.where(method="clip+mvs", augmentation=a))
                                                          for v, a in (("clip", "clip"), ("moco", "moco")))}),
        "08.worse_noise": {kind: records.where(method="clip", noise=noise, filtered=False).summarise().one()
                           for kind, noise in (("wrong_attribute", [noisiest, 0.0]),
                                               ("swapped", [0.0, noisiest]))}}
    answers = {"03.mlm_helps": (True, False), "08.worse_noise": ("swapped", "wrong attribute"),
               "04.moco_hurts": tuple(measured["04.moco_hurts"]["scores"]["clip"])}
    for name, accepted in SHIPPED_ACCEPTS.items():
        verdicts = {a: exercises.check(name, a, **measured[name]) for a in answers[name]}
        assert {a for a, v in verdicts.items() if v.passed} == accepted, (name, verdicts)
