import torch

from declip_lite.data.loader import shapecaps_tokenizer
from declip_lite.text.augment import IGNORE, TokenEDA, mask_tokens
from declip_lite.text.tokenizer import WordTokenizer


def test_round_trip_and_unknown_words():
    tok = WordTokenizer.from_corpus(["a red star", "a blue square"], context_length=8)
    ids = tok.encode(["a red square", "a green star"])
    assert tok.decode(ids) == ["a red square", "a <unk> star"]
    assert ids[0, 0] == tok.sot_id and ids[0, 4] == tok.eot_id and ids[0, 5:].eq(tok.pad_id).all()


def test_truncation_keeps_eot():
    tok = WordTokenizer(["w"], context_length=5)
    ids = tok.encode("w w w w w w w")
    assert ids.tolist() == [[tok.sot_id, 5, 5, 5, tok.eot_id]]


def test_state_dict_round_trip(tokenizer):
    again = WordTokenizer.from_state_dict(tokenizer.state_dict())
    assert again.words == tokenizer.words and again.context_length == tokenizer.context_length


def test_mlm_masking_statistics(tokenizer):
    tokens = tokenizer.encode(["a red star to the left of a small blue square"] * 4000)
    masked, targets = mask_tokens(tokens, tokenizer, 0.15, torch.Generator().manual_seed(0))
    special = torch.isin(tokens, torch.tensor([tokenizer.pad_id, tokenizer.sot_id, tokenizer.eot_id]))
    sel = targets != IGNORE
    assert not (sel & special).any() and torch.equal(masked[special], tokens[special])
    assert abs(sel.sum() / (~special).sum() - 0.15) < 0.01
    frac_mask = (masked[sel] == tokenizer.mask_id).float().mean()
    frac_same = (masked[sel] == tokens[sel]).float().mean()
    assert abs(frac_mask - 0.8) < 0.02 and abs(frac_same - 0.1) < 0.02
    assert torch.equal(targets[sel], tokens[sel])


def test_eda_ops(tokenizer):
    eda = TokenEDA(tokenizer, [["red", "scarlet"]], protected=["red", "blue", "star", "square"], p_delete=0.5)
    text = "a red star left of a blue square"
    tokens = tokenizer.encode([text] * 600)
    out = eda(tokens, torch.Generator().manual_seed(1))
    decoded = tokenizer.decode(out)
    assert "a scarlet star left of a blue square" in decoded  # synonym replacement
    facts = ["red", "star", "blue", "square"]
    for d in decoded:  # protected words never swap: they stay an in-order subsequence
        kept = iter(facts)
        assert all(w in kept for w in d.replace("scarlet", "red").split() if w in facts)
    assert any(len(d.split()) < 8 for d in decoded)  # deletions happened
    assert (out[:, 0] == tokenizer.sot_id).all() and ((out == tokenizer.eot_id).sum(1) == 1).all()


def test_the_vocabulary_is_the_same_in_every_process():
    """Word ids must not depend on string hashing, or a checkpoint means other words elsewhere."""
    import os
    import subprocess
    import sys

    script = "from declip_lite.data.loader import shapecaps_tokenizer; print(shapecaps_tokenizer().words)"
    other = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"  # another seed than this process's
    elsewhere = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                               env={**os.environ, "PYTHONHASHSEED": other}).stdout
    assert elsewhere == f"{shapecaps_tokenizer().words}\n"
