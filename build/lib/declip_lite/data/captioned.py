"""Real image-caption pairs: open_clip-style CSV/TSV, webdataset shards, folders of images with
sidecar ``.txt`` captions. Readers list records; :class:`CaptionedImages` decodes them once
(torchvision resize + centre crop) into memory, with the interface PairBatches reads (``len``,
``images``, ``captions``, ``image_size``, ``device``).

Bad input never costs a run silently: with ``on_error="raise"`` the first bad record stops the
load with its file or row named; with ``"skip"`` it is dropped and counted in ``report``, and the
load fails if more than ``max_skip_rate`` of the records were bad.
"""
import csv
import io
import os
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


@dataclass
class Record:
    image: object   # a path (str) or the encoded bytes
    caption: object  # str, raw bytes (decoded here), or None when there is none
    where: str      # "file.csv row 3", "shard.tar key 000012", a path: named in every error
    problem: str = None  # set by a reader that already knows the record is bad (a truncated shard)


class BadInput(ValueError):
    """A record that cannot be used, named by its file or row."""


def read_csv(path, image_key="filepath", caption_key="title", sep=None):
    """Records of an open_clip-style CSV/TSV (``sep`` defaults to tab for .tsv, else comma).
    Relative image paths are read from the CSV's folder."""
    sep = sep or ("\t" if str(path).endswith(".tsv") else ",")
    root = os.path.dirname(os.path.abspath(path))
    # utf-8-sig: a byte-order mark is not part of the first column's name. surrogateescape: a
    # non-UTF-8 byte survives the read and fails its own row (as bytes), under on_error's policy
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
        reader = csv.DictReader(f, delimiter=sep)
        if reader.fieldnames is None:
            raise BadInput(f"{path}: the file is empty (expected a header row with {image_key!r} and "
                           f"{caption_key!r})")
        missing = {image_key, caption_key} - set(reader.fieldnames)
        if missing:
            raise BadInput(f"{path}: no column(s) {sorted(missing)}; its columns are {reader.fieldnames} "
                           f"(set image_key=, caption_key= or sep=)")
        return [Record(os.path.join(root, row[image_key] or ""), _raw(row[caption_key]), f"{path} row {i}")
                for i, row in enumerate(reader, start=2)]  # row 1 is the header


def _raw(text):
    """Text read with surrogateescape: unchanged if it was UTF-8 (or missing), else its original bytes."""
    if text is None:
        return None
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


def read_folder(root):
    """Records of every image under ``root`` whose caption is the ``.txt`` file beside it."""
    records = []
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() in IMAGE_EXTENSIONS:
                path, txt = os.path.join(folder, name), os.path.join(folder, stem + ".txt")
                caption = open(txt, "rb").read() if os.path.exists(txt) else None
                records.append(Record(path, caption, path))
    return records


def read_webdataset(urls):
    """Records of webdataset tar shards: per key, an image (any image extension) and ``.txt``.

    A local shard cut short (a copy that stopped) adds one bad record naming it, so
    :class:`CaptionedImages` raises or counts it under its ``on_error`` policy."""
    import webdataset as wds

    records = []
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        image = next((sample[k] for k in sample if "." + k.lower().split(".")[-1] in IMAGE_EXTENSIONS), None)
        records.append(Record(image, sample.get("txt"), f"{sample['__url__']} key {sample['__key__']}"))
    return records + [Record(None, None, shard, "truncated tar shard: a member ends past the end of the file")
                      for shard in _local_shards(urls) if _truncated(shard)]


def _local_shards(urls):
    from braceexpand import braceexpand  # a dependency of webdataset

    urls = [urls] if isinstance(urls, str) else list(urls)
    return [u for url in urls for u in braceexpand(url) if os.path.exists(u)]


def _truncated(shard):
    """True when the shard lacks the two zero blocks that end every tar archive: it was cut, in a
    member or between two (where tarfile and webdataset both stop without a word)."""
    import tarfile

    try:
        with tarfile.open(shard) as tar:
            end = max((m.offset_data + -(-m.size // 512) * 512 for m in tar), default=0)
    except (tarfile.TarError, EOFError):
        return True
    with open(shard, "rb") as f:
        f.seek(end)
        marker = f.read(1024)
    return marker != bytes(1024)


def _caption(record):
    if record.problem:
        raise BadInput(f"{record.where}: {record.problem}")
    text = record.caption
    if text is None:
        raise BadInput(f"{record.where}: no caption")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadInput(f"{record.where}: caption is not UTF-8 ({e.reason} at byte {e.start})") from None
    if not text.strip():
        raise BadInput(f"{record.where}: empty caption")
    return " ".join(text.split())


def _rgb(record):
    """The image as an RGB PIL image: greyscale, CMYK, palette, RGBA (on white) and 16-bit too."""
    from PIL import Image

    if record.image is None:
        raise BadInput(f"{record.where}: no image")
    if isinstance(record.image, str) and not os.path.exists(record.image):
        raise BadInput(f"{record.where}: missing file {record.image}")
    try:
        img = Image.open(record.image if isinstance(record.image, str) else io.BytesIO(record.image))
        img.load()
    except Exception as e:  # PIL raises several types for unreadable and truncated files
        raise BadInput(f"{record.where}: corrupt or truncated image ({type(e).__name__}: {e})") from None
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit / float: to 8 bits by the format's range
        a = np.asarray(img, dtype=np.float32)
        # PNG/TIFF 16-bit grey arrives as "I;16" or "I"
        full = 1.0 if img.mode == "F" and a.max() <= 1.0 else 65535.0
        img = Image.fromarray((255 * np.clip(a / full, 0, 1)).round().astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return img.convert("RGB")


class CaptionedImages:
    """``records`` decoded to ``(N, 3, S, S)`` uint8 in memory (resize + centre crop to ``image_size``)."""

    def __init__(self, records, image_size=32, on_error="raise", max_skip_rate=0.05, device="cpu",
                 progress=False):
        from torchvision.transforms import v2

        if on_error not in ("raise", "skip"):
            raise ValueError(f"CaptionedImages: on_error={on_error!r}; expected 'raise' or 'skip'")
        resize = v2.Compose([v2.ToImage(), v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)])
        images, captions, self.report = [], [], {"records": len(records), "skipped": 0, "problems": []}
        for record in tqdm(records, disable=not progress, desc="decoding"):
            try:
                caption, image = _caption(record), resize(_rgb(record))
            except BadInput as e:
                if on_error == "raise":
                    raise
                self.report["skipped"] += 1
                self.report["problems"].append(str(e))
                continue
            images.append(image)
            captions.append(caption)
        if not records:
            raise BadInput("CaptionedImages: no records to load (an empty CSV, folder or shard list)")
        if self.report["skipped"] > max_skip_rate * len(records):
            raise BadInput(f"CaptionedImages: {self.report['skipped']} of {len(records)} records are bad "
                           f"(more than max_skip_rate={max_skip_rate}); first problems: "
                           f"{self.report['problems'][:3]}")
        self.image_size, self.device = image_size, torch.device(device)
        self.pixels, self._captions = torch.stack(images).to(self.device), captions

    def __len__(self):
        return len(self._captions)

    def images(self, index):
        return self.pixels[torch.as_tensor(index, device=self.device).flatten()].float() / 255

    def captions(self, index):
        return [self._captions[i] for i in torch.as_tensor(index).flatten().tolist()]

    def truncated(self, tokenizer):
        """How many captions are longer than the tokenizer's context (they are cut, EOT kept)."""
        return sum(len(tokenizer.split(c)) > tokenizer.context_length - 2 for c in self._captions)
