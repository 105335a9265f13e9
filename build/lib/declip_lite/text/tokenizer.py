"""A word-level tokenizer with CLIP's framing: [SOT] words... [EOT], padded to a context length.

The interface (``encode`` -> LongTensor, ``decode``, the special ids, ``vocab_size``) is the one
the models and the text augmentations rely on, so a BPE tokenizer can stand in for real captions.
"""
import re
from collections import Counter

import torch

SPECIALS = ("<pad>", "<sot>", "<eot>", "<mask>", "<unk>")
_WORD = re.compile(r"[a-z0-9]+")


class WordTokenizer:
    pad_id, sot_id, eot_id, mask_id, unk_id = range(len(SPECIALS))

    def __init__(self, words, context_length=32):
        if context_length < 3:
            raise ValueError(f"WordTokenizer: context_length={context_length} leaves no room between SOT "
                             f"and EOT")
        self.words = list(SPECIALS) + [w for w in dict.fromkeys(words) if w not in SPECIALS]
        self.ids = {w: i for i, w in enumerate(self.words)}
        self.context_length = context_length

    @classmethod
    def from_corpus(cls, texts, context_length=32, min_count=1):
        """A vocabulary of every word seen at least ``min_count`` times, most frequent first, ties
        in alphabetical order: the same ids in every process, whatever order ``texts`` came in."""
        counts = Counter(w for t in texts for w in cls.split(t))
        ranked = sorted(counts.items(), key=lambda wc: (-wc[1], wc[0]))
        return cls([w for w, c in ranked if c >= min_count], context_length)

    @staticmethod
    def split(text):
        return _WORD.findall(text.lower())

    @property
    def vocab_size(self):
        return len(self.words)

    @property
    def special_ids(self):
        return list(range(len(SPECIALS)))

    def encode(self, texts):
        """``(len(texts), context_length)`` ids; long texts are truncated but keep their EOT."""
        if isinstance(texts, str):
            texts = [texts]
        out = torch.full((len(texts), self.context_length), self.pad_id, dtype=torch.long)
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"WordTokenizer.encode: text {row} is {type(text).__name__}, not str")
            ids = [self.ids.get(w, self.unk_id) for w in self.split(text)][: self.context_length - 2]
            out[row, : len(ids) + 2] = torch.tensor([self.sot_id, *ids, self.eot_id])
        return out

    def decode(self, ids):
        """Texts without PAD/SOT/EOT; MASK and UNK stay visible as <mask> and <unk>."""
        rows = ids.tolist() if torch.is_tensor(ids) else ids
        rows = [rows] if rows and isinstance(rows[0], int) else rows
        skip = {self.pad_id, self.sot_id, self.eot_id}
        return [" ".join(self.words[i] for i in r if i not in skip) for r in rows]

    def state_dict(self):
        return {"words": self.words[len(SPECIALS):], "context_length": self.context_length}

    @classmethod
    def from_state_dict(cls, state):
        return cls(state["words"], state["context_length"])


class BPETokenizer(WordTokenizer):
    """Byte-pair encoding trained on *your* captions with Hugging Face ``tokenizers``; CLIP's
    framing, special ids and the word tokenizer's interface.

    Why train one instead of loading CLIP's 49,408-token vocabulary (open_clip ships it): it
    works offline, and its size follows the data: a few thousand tokens fit a small caption set
    and a small model, where CLIP's embedding table alone would outweigh a teaching-size tower.
    Use CLIP's vocabulary when you load OpenAI weights; nothing here does.
    """

    def __init__(self, tokenizer_json, context_length=77):
        from tokenizers import Tokenizer

        self.bpe = Tokenizer.from_str(tokenizer_json)
        vocab = self.bpe.get_vocab()
        if [vocab.get(s) for s in SPECIALS] != list(range(len(SPECIALS))):
            raise ValueError(f"BPETokenizer: the specials {SPECIALS} must be tokens 0..{len(SPECIALS) - 1}")
        super().__init__(sorted(vocab, key=vocab.get)[len(SPECIALS):], context_length)

    @classmethod
    def train(cls, texts, vocab_size=2000, context_length=77):
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

        bpe = Tokenizer(models.BPE(unk_token="<unk>", end_of_word_suffix="</w>"))
        bpe.normalizer = normalizers.Lowercase()
        bpe.pre_tokenizer = pre_tokenizers.Whitespace()
        bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size,
                                                           special_tokens=list(SPECIALS),
                                                           end_of_word_suffix="</w>", show_progress=False))
        return cls(bpe.to_str(), context_length)

    def split(self, text):
        """BPE pieces of ``text``. A caption's own "<eot>" is characters, never the special id: a space
        after each "<" stops the special-token match and leaves the pieces the pre-tokenizer makes anyway."""
        return self.bpe.encode(text.replace("<", "< "), add_special_tokens=False).tokens

    def decode(self, ids):
        return [t.replace(" ", "").replace("</w>", " ").strip() for t in super().decode(ids)]

    def state_dict(self):
        return {"bpe": self.bpe.to_str(), "context_length": self.context_length}

    @classmethod
    def from_state_dict(cls, state):
        return cls(state["bpe"], state["context_length"])
