"""Your own data at scale: an open_clip-style CSV of image files, a BPE tokenizer trained on its
captions, resumable training, torchrun."""
import contextlib
import os

from ..checkpoint import RunLock, read_json, save_json
from ..data.captioned import CaptionedImages, read_csv
from ..distributed import from_main, is_main
from ..text.augment import TokenEDA
from ..text.tokenizer import BPETokenizer
from ..train import seed_everything
from .build import make_trainer
from .config import RunConfig


def train_csv(csv, method="clip", preset="gpu", seed=0, runs_dir="data/runs", device=None,
              image_key="filepath", caption_key="title", sep=None, on_error="skip", max_skip_rate=0.01,
              vocab_size=8000, context_length=32, train_overrides=None, **settings):
    """Train ``method`` on an open_clip-style CSV of image files, with a BPE tokenizer trained on
    its captions; resumable from ``runs_dir``. Under torchrun every rank loads the CSV and trains
    on its share of each batch; rank 0 writes the checkpoint.

    BPE training is not deterministic (ties between merges), so rank 0 trains the tokenizer once,
    saves it beside the checkpoint, and every rank and every resume uses that file. ``settings``:
    ``RunConfig.of``'s (batch_size=..., steps=...; the CSV decides the pairs)."""
    config = RunConfig.of(method, preset, seed, train_overrides=train_overrides, **settings)
    seed_everything(seed)
    data = CaptionedImages(read_csv(csv, image_key, caption_key, sep), config.data.image_size, on_error,
                           max_skip_rate, device, progress=is_main())
    path = os.path.join(runs_dir, f"{os.path.splitext(os.path.basename(csv))[0]}-{method}-s{seed}")
    state = None
    if is_main():
        if os.path.exists(path + ".tokenizer.json"):
            state = read_json(path + ".tokenizer.json",
                              f"delete it and {path}.pt to retrain with a new vocabulary")
        else:
            state = BPETokenizer.train(data.captions(range(len(data))), vocab_size,
                                       context_length).state_dict()
            save_json(state, path + ".tokenizer.json")
    tokenizer = BPETokenizer.from_state_dict(from_main(state))
    trainer = make_trainer(data, tokenizer, config, device=device, eda=TokenEDA(tokenizer))
    with RunLock(path) if is_main() else contextlib.nullcontext():
        if os.path.exists(path + ".pt"):
            trainer.load(path + ".pt")
        trainer.fit(checkpoint=path + ".pt", progress=is_main())
    if is_main():
        save_json({"csv": csv, "load_report": data.report, "truncated_captions": data.truncated(tokenizer),
                   "tokenizer": path + ".tokenizer.json", "history": trainer.history}, path + ".json")
        print(f"{len(data)} pairs ({data.report['skipped']} bad rows skipped); checkpoint {path}.pt")
    return trainer
