"""Real-data paths on files the tests make: CSV/TSV, folders, webdataset shards, every kind of bad
input, the BPE tokenizer, WordNet's message, ImageFolder/torchvision benchmarks, and training."""
import io
import math
import os
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from declip_lite import experiments
from declip_lite.data.captioned import BadInput, CaptionedImages, read_csv, read_folder, read_webdataset
from declip_lite.data.external import image_folder_task, torchvision_task
from declip_lite.evaluate import zero_shot
from declip_lite.models.clip import CLIPModel, model_config
from declip_lite.text.augment import TokenEDA, wordnet_synonym_groups
from declip_lite.text.tokenizer import BPETokenizer

CAPTIONS = ["a red circle on the left", "a small blue square", "two green stars", "a yellow ring at the top"]


def _png(path, mode="RGB", size=(20, 12)):
    if mode == "I;16":
        Image.fromarray((np.arange(size[0] * size[1]).reshape(size[1], size[0]) * 200)
                        .astype(np.uint16)).save(path)
    elif mode == "CMYK":
        Image.new("CMYK", size, (0, 255, 255, 0)).save(path.replace(".png", ".jpg"))
        return os.path.basename(path.replace(".png", ".jpg"))
    else:
        Image.new(mode, size, {"RGB": (200, 30, 30), "L": 128, "RGBA": (0, 0, 255, 0)}[mode]).save(path)
    return os.path.basename(path)


def _csv(tmp_path, rows, sep=",", header=("filepath", "title")):
    path = tmp_path / ("data.tsv" if sep == "\t" else "data.csv")
    path.write_text("\n".join([sep.join(header)] + [sep.join(r) for r in rows]) + "\n", encoding="utf-8")
    return str(path)


def test_every_image_mode_decodes_to_rgb(tmp_path):
    names = [_png(str(tmp_path / f"{m.replace(';', '')}.png"), m)
             for m in ("RGB", "L", "RGBA", "I;16", "CMYK")]
    data = CaptionedImages(read_csv(_csv(tmp_path, [(n, c) for n, c in zip(names, CAPTIONS + ["cyan"])],
                                         sep="\t")), 16)
    assert data.pixels.shape == (5, 3, 16, 16) and data.pixels.dtype == torch.uint8
    assert data.pixels[2].float().mean() == 255  # a fully transparent RGBA image lies on white
    assert 170 < data.pixels[3].max() < 190 and data.pixels[3].min() < 50  # 16-bit: x / 65535, not clipped
    assert data.captions([1]) == [CAPTIONS[1]] and data.report["skipped"] == 0


@pytest.mark.parametrize("problem", ["corrupt", "truncated", "missing", "empty", "not_utf8", "no_caption"])
def test_each_bad_record_is_named_or_skipped_and_counted(tmp_path, problem):
    good = [_png(str(tmp_path / f"ok{i}.png")) for i in range(9)]
    for i, name in enumerate(good):
        (tmp_path / name.replace(".png", ".txt")).write_text(CAPTIONS[i % 4])
    bad = tmp_path / "bad.png"
    _png(str(bad))
    (tmp_path / "bad.txt").write_bytes(b"a caption")
    if problem == "corrupt":
        bad.write_bytes(os.urandom(300))
    elif problem == "truncated":
        bad.write_bytes(bad.read_bytes()[:40])
    elif problem == "empty":
        (tmp_path / "bad.txt").write_text("   ")
    elif problem == "not_utf8":
        (tmp_path / "bad.txt").write_bytes(b"caf\xe9 au lait")
    elif problem == "no_caption":
        os.remove(tmp_path / "bad.txt")
    records = read_folder(str(tmp_path))
    if problem == "missing":
        records[0].image = str(tmp_path / "gone.png")
        where = records[0].where
    else:
        where = str(bad)
    with pytest.raises(BadInput) as err:
        CaptionedImages(records, 16)
    assert where in str(err.value)
    data = CaptionedImages(records, 16, on_error="skip", max_skip_rate=0.2)
    assert len(data) == 9 and data.report["skipped"] == 1 and where in data.report["problems"][0]
    with pytest.raises(BadInput, match="max_skip_rate"):
        CaptionedImages(records, 16, on_error="skip", max_skip_rate=0.05)


def test_a_csv_without_its_columns_names_the_file_and_columns(tmp_path):
    path = _csv(tmp_path, [("x.png", "a cat")], header=("image", "caption"))
    with pytest.raises(BadInput, match=r"data\.csv: no column\(s\) \['filepath', 'title'\]; its columns are"):
        read_csv(path)
    assert read_csv(path, image_key="image", caption_key="caption")[0].where == f"{path} row 2"


def test_webdataset_shards_and_a_key_without_caption(tmp_path):
    shard = tmp_path / "shard-000.tar"
    with tarfile.open(shard, "w") as tar:
        for key, caption in (("000", CAPTIONS[0]), ("001", CAPTIONS[1]), ("002", None)):
            png = io.BytesIO()
            Image.new("RGB", (8, 8), (10, 200, 10)).save(png, format="PNG")
            members = ([(f"{key}.png", png.getvalue())]
                       + ([(f"{key}.txt", caption.encode())] if caption else []))
            for name, payload in members:
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    records = read_webdataset(str(shard))
    with pytest.raises(BadInput, match="shard-000.tar key 002: no caption"):
        CaptionedImages(records, 8)
    data = CaptionedImages(records, 8, on_error="skip", max_skip_rate=0.5)
    assert len(data) == 2 and data.captions([0, 1]) == CAPTIONS[:2]


def test_bpe_tokenizer_round_trips_and_keeps_clip_framing(tmp_path):
    tok = BPETokenizer.train(CAPTIONS * 5, vocab_size=60, context_length=8)
    ids = tok.encode(["a red circle", "a small blue square on the left of a red circle"])
    # cut, EOT kept
    assert ids[0, 0] == tok.sot_id and tok.eot_id in ids[1].tolist() and ids[1, -1] == tok.eot_id
    assert tok.decode(ids[:1]) == ["a red circle"] and (tok.pad_id, tok.mask_id) == (0, 3)
    again = BPETokenizer.from_state_dict(tok.state_dict())
    assert torch.equal(again.encode(["two green stars"]), tok.encode(["two green stars"]))
    data_tok = BPETokenizer.train(CAPTIONS, vocab_size=40, context_length=4)
    assert CaptionedImages.truncated(type("D", (), {"_captions": CAPTIONS})(), data_tok) == 4


def test_wordnet_synonyms_or_a_clear_message():
    tok = BPETokenizer.train(["a big large dog", "a small little cat"] * 3, vocab_size=80)
    try:
        groups = wordnet_synonym_groups(tok)
    except RuntimeError as e:
        assert "nltk" in str(e) and "wordnet" in str(e)
    else:
        assert all(len(g) > 1 and set(g) <= set(tok.ids) for g in groups)
        TokenEDA(tok, groups)


def test_image_folder_and_torchvision_benchmarks(tmp_path, tokenizer):
    for cls, colour in (("red_thing", (220, 20, 20)), ("blue_thing", (20, 20, 220))):
        (tmp_path / "val" / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (10, 10), colour).save(tmp_path / "val" / cls / f"{i}.png")
    task = image_folder_task(str(tmp_path / "val"), 32, templates=["a {}"])
    assert task.classnames == ["blue thing", "red thing"] and task.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert sorted(image_folder_task(str(tmp_path / "val"), 32, n=2).labels.tolist()) == [0, 1]  # spread
    model = CLIPModel(model_config(vocab_size=tokenizer.vocab_size))
    result = zero_shot(model, tokenizer, task)
    assert result["n"] == 6 and 0 <= result["top1"] <= 1 and len(result["confusion"]) == 2
    with pytest.raises(FileNotFoundError, match="download=True"):
        torchvision_task("cifar10", str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match="cifar100"):
        torchvision_task("mnist", str(tmp_path))


def test_a_csv_run_resumes_with_the_tokenizer_it_started_with(tmp_path):
    """BPE training is not deterministic, so a resume must not train a new one."""
    names = [_png(str(tmp_path / f"{i}.png"), "RGB", (24, 24)) for i in range(8)]
    csv = _csv(tmp_path, [(n, CAPTIONS[i % 4]) for i, n in enumerate(names)])
    kw = dict(method="clip", preset="smoke", runs_dir=str(tmp_path / "runs"), device="cpu", vocab_size=60,
              context_length=16, batch_size=4, eval_n=8)
    first = experiments.train_csv(csv, steps=1, **kw)
    resumed = experiments.train_csv(csv, steps=2, **kw)
    assert resumed.step == 2 and resumed.history[0] == first.history[0]
    assert resumed.batches.tokenizer.state_dict() == first.batches.tokenizer.state_dict()


def test_training_on_a_csv_of_real_files(tmp_path):
    names = [_png(str(tmp_path / f"{i}.png"), "RGB", (24, 24)) for i in range(8)]
    data = CaptionedImages(read_csv(_csv(tmp_path, [(n, CAPTIONS[i % 4]) for i, n in enumerate(names)])), 32)
    tok = BPETokenizer.train(CAPTIONS, vocab_size=60, context_length=16)
    trainer = experiments.make_trainer(data, tok, experiments.RunConfig.of("declip", batch_size=4, steps=2),
                                       device="cpu", eda=TokenEDA(tok))
    trainer.fit(progress=False)
    assert (trainer.step == 2 and math.isfinite(trainer.history[-1]["loss"])
            and trainer.model.config.context_length == 16)
