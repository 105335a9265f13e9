import pytest
import torch

from declip_lite.data.captions import ATTRIBUTE_WORDS
from declip_lite.data.scenes import GEOMETRIC, heldout_colour, sample_scenes, uniform
from declip_lite.data.shapecaps import TASKS, ShapeCaps, make_task
from declip_lite.data.views import AUGMENTATIONS, augment, object_boxes
from declip_lite.draws import Draws


def test_uniform_is_a_pure_function_of_seed_and_index():
    idx = torch.arange(100)
    a = uniform(3, idx, 7, 4)
    assert torch.equal(a[10:20], uniform(3, idx[10:20], 7, 4))  # same row, any batch
    assert not torch.equal(a, uniform(4, idx, 7, 4)) and not torch.equal(a, uniform(3, idx, 8, 4))
    assert 0 <= a.min() and a.max() < 1 and abs(a.mean() - 0.5) < 0.05


def test_generator_is_deterministic_and_order_free():
    ds = ShapeCaps(1000, seed=5)
    idx = torch.tensor([3, 999, 42])
    assert torch.equal(ds.images(idx), ds.images(idx))
    assert torch.equal(ds.images(idx)[1], ds.images([999])[0])
    assert ds.captions(idx) == ds.captions(idx) and ds.captions(idx)[2] == ds.captions([42])[0]
    assert ds.captions(idx) != ShapeCaps(1000, seed=6).captions(idx)
    image, text = ds[42]
    assert torch.equal(image, ds.images([42])[0]) and text == ds.captions([42])[0]


@pytest.mark.parametrize("size", [32, 64, 128])
def test_images_shape_and_range(size):
    img = ShapeCaps(50, image_size=size).images(torch.arange(8))
    assert img.shape == (8, 3, size, size) and img.min() >= 0 and img.max() <= 1


def test_a_rendered_object_has_its_colour():
    scenes = sample_scenes(0, torch.arange(64), (1.0, 0.0, 0.0), shapes=[0])  # single circles
    from declip_lite.data.render import render
    from declip_lite.data.scenes import COLOURS
    img = render(scenes, 64, 0, torch.arange(64))
    rgb = torch.tensor(list(COLOURS.values()))[scenes.colour[:, 0]]
    cx, cy = (scenes.x[:, 0] * 64).long(), (scenes.y[:, 0] * 64).long()
    centre = img[torch.arange(64), :, cy, cx]
    assert torch.allclose(centre, rgb, atol=0.02)


def test_relation_captions_state_the_true_direction():
    from declip_lite.data.captions import caption, scene_dicts
    import random
    scenes = sample_scenes(0, torch.arange(400), (0.0, 0.0, 1.0))
    first_is_left_or_top = torch.where(scenes.position == 0, scenes.x[:, 0] < scenes.x[:, 1],
                                       scenes.y[:, 0] < scenes.y[:, 1])
    assert first_is_left_or_top.all()
    for s in scene_dicts(scenes)[:50]:
        s["objects"][0]["shape"], s["objects"][1]["shape"] = 4, 1  # the star takes the first place
        for k in range(10):
            c = caption(s, random.Random(k))
            named_first = next(w for w in c.split() if w in ("star", "square", "block"))
            for rel, first in (("left of", "star"), ("above", "star"), ("over", "star"),
                               ("right of", "square"), ("below", "square"), ("under", "square")):
                if f" {rel} " in c:
                    assert named_first.replace("block", "square") == first, c


def test_heldout_combinations_never_appear_in_training():
    s = sample_scenes(0, torch.arange(20000))
    geo = s.active & (s.shape < len(GEOMETRIC))
    assert not (geo & (s.colour == heldout_colour(s.shape))).any()


def test_captions_have_paraphrases_and_known_words(tokenizer):
    ds = ShapeCaps(4000, seed=1)
    caps = ds.captions(torch.arange(4000))
    assert len(set(caps)) > 1000  # not a lookup table
    assert (tokenizer.encode(caps) == tokenizer.unk_id).sum() == 0
    from collections import defaultdict
    from declip_lite.data.captions import scene_dicts
    by_content = defaultdict(set)  # identical scene content -> its captions
    for s, c in zip(scene_dicts(ds.scenes(torch.arange(4000))), caps):
        by_content[repr(s)].add(c)
    shared = [len(c) for c in by_content.values() if len(c) >= 2]
    assert len(shared) > 50  # paraphrases across pairs: what nearest-neighbour supervision needs


def test_noise_knobs_change_the_expected_share_of_captions():
    idx = torch.arange(3000)
    clean = ShapeCaps(3000, seed=2).captions(idx)
    wrong = ShapeCaps(3000, seed=2, wrong_attribute_rate=0.3).captions(idx)
    swapped = ShapeCaps(3000, seed=2, swap_rate=0.3).captions(idx)
    assert 0.2 < sum(a != b for a, b in zip(clean, wrong)) / 3000 < 0.32
    assert 0.25 < sum(a != b for a, b in zip(clean, swapped)) / 3000 < 0.33


@pytest.mark.parametrize("bad", [dict(n=0), dict(n=10, image_size=16), dict(n=10, swap_rate=1.5),
                                 dict(n=10, kinds=(0.5, 0.5))])
def test_bad_arguments_name_themselves(bad):
    with pytest.raises(ValueError, match=next(iter(k for k in bad if k != "n" or len(bad) == 1))):
        ShapeCaps(**bad)


@pytest.mark.parametrize("name", list(TASKS))
def test_tasks_have_unambiguous_labels(name):
    task = make_task(name, n=200)
    assert task.images.shape == (200, 3, 32, 32)
    assert task.labels.min() >= 0 and task.labels.max() < len(task.classnames)
    assert len(set(task.labels.tolist())) > 1 and all("{}" in t for t in task.templates)
    for attribute, index in (task.attributes or {}).items():  # what else it shows, named by that task
        assert index.shape == task.labels.shape and 0 <= index.min() < index.max() < len(TASKS[attribute][0])
    if name in ("shape", "colour", "size", "position"):
        assert torch.equal(task.attributes[name], task.labels)
    assert (task.attributes is None) == (name == "count")


def test_composition_task_shows_only_heldout_pairs():
    task = make_task("composition", n=300)
    shape, colour = task.labels // 8, task.labels % 8
    assert torch.equal(colour, heldout_colour(shape))


def test_safe_crops_keep_every_object_and_rewrite_flips():
    ds = ShapeCaps(64, seed=0)
    scenes = ds.scenes(torch.arange(64))
    boxes = object_boxes(scenes)
    g = torch.Generator().manual_seed(0)
    from declip_lite.data.views import _crop_boxes
    x0, y0, w, h = _crop_boxes(AUGMENTATIONS["safe"], boxes, Draws([g], 64, "cpu"))
    eps = 1e-5
    assert (x0 <= boxes[:, 0] + eps).all() and (x0 + w >= boxes[:, 2] - eps).all()
    assert (y0 <= boxes[:, 1] + eps).all() and (y0 + h >= boxes[:, 3] - eps).all()


def test_views_differ_per_sample_and_keep_shape():
    img = ShapeCaps(16).images(torch.arange(16))
    v = augment(img, AUGMENTATIONS["moco"], torch.Generator().manual_seed(0))
    assert v.shape == img.shape and v.min() >= 0 and v.max() <= 1
    assert not torch.allclose(v, img)
    flip = augment(img, AUGMENTATIONS["none"], None, flipped=torch.ones(16, dtype=torch.bool))
    assert torch.allclose(flip, img.flip(-1), atol=1e-5)


def test_hue_free_jitter_keeps_the_colour_name():
    from declip_lite.data.views import _colour_jitter
    red = torch.zeros(256, 3, 4, 4)
    red[:, 0] = 0.86
    red[:, 1:] = 0.12
    safe = _colour_jitter(red, AUGMENTATIONS["safe"], Draws([torch.Generator().manual_seed(0)], 256, "cpu"))
    assert (safe[:, 0] >= safe[:, 1]).all()  # still reddest in red
    assert set(ATTRIBUTE_WORDS) >= {"red", "left", "right"}


def test_per_image_moco_pipeline_from_torchvision_v2():
    from declip_lite.data.views import moco_v2_transform
    t = moco_v2_transform(48)
    torch.manual_seed(0)
    img = (torch.rand(3, 64, 80) * 255).to(torch.uint8)
    out = t(img)
    assert out.shape == (3, 48, 48) and out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
