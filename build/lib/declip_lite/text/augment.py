"""Text views on token ids, batched on the device: MLM masking (DeCLIP's TSS) and EDA (its T_aug).

Working on ids, not strings, means nothing is re-tokenised inside a training step.
"""
import torch

from ..draws import Draws

IGNORE = -100  # the cross-entropy ignore index for unmasked positions


def content_positions(tokens, tokenizer):
    """True where a token is a word (not PAD, SOT, EOT or MASK): what masking and EDA may touch."""
    return ~torch.isin(tokens, torch.tensor(tokenizer.special_ids[:4], device=tokens.device))


def mask_tokens(tokens, tokenizer, p=0.15, generator=None):
    """BERT masking: select each word with prob ``p`` (never PAD/SOT/EOT/MASK); of the selected,
    80 % -> MASK, 10 % -> a random word, 10 % unchanged. Returns (masked tokens, targets), with
    targets = IGNORE at unselected positions. ``generator``: a torch.Generator, or K runs' :class:`Draws`."""
    draws, (_, L) = Draws.of(generator, len(tokens), tokens.device), tokens.shape
    rand = lambda shape, g: torch.rand(shape, generator=g, device=tokens.device)  # noqa: E731
    selected = (draws.per_token(rand, L, 1.0) < p) & content_positions(tokens, tokenizer)
    roll = draws.per_token(rand, L, 1.0)
    n_special = len(tokenizer.special_ids)
    random_words = draws.per_token(lambda shape, g: torch.randint(n_special, tokenizer.vocab_size, shape,
                                                                  generator=g, device=tokens.device), L, 0)
    masked = torch.where(selected & (roll < 0.8), tokenizer.mask_id, tokens)
    masked = torch.where(selected & (roll >= 0.8) & (roll < 0.9), random_words, masked)
    return masked, torch.where(selected, tokens, IGNORE)


class TokenEDA:
    """Easy Data Augmentation as in DeCLIP: per caption ONE of synonym replacement (one word),
    random swap (one pair) or random deletion (each word with prob ``p_delete``).

    Caption truth: swapping two *attribute* words of a multi-object caption ("a red star left
    of a blue square" -> "a blue star left of a red square") binds facts to the wrong object and
    makes the caption false, while a deletion only removes information. So words in
    ``protected`` are never swapped; they may still be deleted or replaced by a synonym.
    """

    def __init__(self, tokenizer, synonym_groups=(), protected=(), p_delete=0.1):
        ids = lambda words: [tokenizer.ids[w] for w in words if w in tokenizer.ids]  # noqa: E731
        V, groups = tokenizer.vocab_size, [ids(g) for g in synonym_groups]
        width = max([len(g) - 1 for g in groups] + [1])
        self.synonyms = torch.full((V, width), -1, dtype=torch.long)
        for group in groups:
            for w in group:
                others = [o for o in group if o != w]
                self.synonyms[w, : len(others)] = torch.tensor(others, dtype=torch.long)
        self.n_synonyms = (self.synonyms >= 0).sum(1)
        self.swappable = torch.ones(V, dtype=torch.bool)
        self.swappable[ids(protected)] = False
        self.swappable[tokenizer.special_ids] = False
        self.tokenizer, self.p_delete = tokenizer, p_delete

    def _tables_on(self, dev):
        """The lookup tables on ``dev``, moved there once (not on every call)."""
        if self.synonyms.device != dev:
            self.synonyms, self.n_synonyms, self.swappable = (
                t.to(dev) for t in (self.synonyms, self.n_synonyms, self.swappable))

    def __call__(self, tokens, generator=None):
        """One EDA edit of each caption. ``generator``: a torch.Generator, or K runs' :class:`Draws`."""
        dev, (B, L) = tokens.device, tokens.shape
        self._tables_on(dev)
        draws = Draws.of(generator, B, dev)
        rand = lambda shape, g: torch.rand(shape, generator=g, device=dev)  # noqa: E731
        op = draws.randint(0, 3)
        content = content_positions(tokens, self.tokenizer)
        rows = torch.arange(B, device=dev)
        out = tokens.clone()
        # 0: synonym replacement of one word that has synonyms
        n_syn = self.n_synonyms[tokens]
        pick = torch.where(n_syn > 0, draws.per_token(rand, L, 0.0), -1.0).argmax(1)
        word = tokens[rows, pick]
        choice = (draws.rand() * n_syn[rows, pick].clamp_min(1)).long()
        replace = (op == 0) & (n_syn[rows, pick] > 0)
        out[rows, pick] = torch.where(replace, self.synonyms[word, choice], word)
        # 1: swap two unprotected words
        score = torch.where(self.swappable[tokens], draws.per_token(rand, L, 0.0), -1.0)
        top, pos = score.topk(2, dim=1)
        swap = (op == 1) & (top[:, 1] >= 0)
        a, b = pos[:, 0], pos[:, 1]
        ta, tb = out[rows, a], out[rows, b]
        out[rows, a], out[rows, b] = torch.where(swap, tb, ta), torch.where(swap, ta, tb)
        # 2: delete words with prob p_delete (keep at least one), then close the gaps
        drop = (op[:, None] == 2) & content & (draws.per_token(rand, L, 1.0) < self.p_delete)
        drop &= (content & ~drop).any(1, keepdim=True)
        order = (drop.long() * L + torch.arange(L, device=dev)).argsort(1)
        return torch.where(drop, self.tokenizer.pad_id, out).gather(1, order)


def wordnet_synonym_groups(tokenizer):
    """Synonym groups for :class:`TokenEDA` on real captions, from WordNet (through nltk): each
    whole-word token of the vocabulary with its WordNet synonyms that are whole-word tokens too."""
    try:
        from nltk.corpus import wordnet

        wordnet.synsets("dog")
    except (ImportError, LookupError) as e:
        raise RuntimeError("WordNet synonyms need nltk and its WordNet corpus: `pip install nltk` then "
                           "`python -m nltk.downloader wordnet` (offline: copy an nltk_data folder holding "
                           "corpora/wordnet and point NLTK_DATA at it). Without them, EDA on real captions "
                           "still deletes and swaps words; pass synonym_groups=() to TokenEDA.") from e
    suffix = "</w>" if any(w.endswith("</w>") for w in tokenizer.words) else ""
    whole = {w[: len(w) - len(suffix)] for w in tokenizer.words[len(tokenizer.special_ids):]
             if w.endswith(suffix)}
    groups = []
    for word in sorted(whole):
        synonyms = {lemma.name().lower() for s in wordnet.synsets(word) for lemma in s.lemmas()} & whole
        if len(synonyms | {word}) > 1:
            groups.append([w + suffix for w in sorted(synonyms | {word})])
    return groups
