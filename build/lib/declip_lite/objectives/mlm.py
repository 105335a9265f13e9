"""Text self-supervision (TSS): masked language modelling on the text tower's token states.

    L_TSS = CE(head(h_t), x_t) averaged over the masked positions t only.

Attention (our choice, the reference's quirk): the text tower stays causal, so a masked word
is predicted from its left context only. That keeps ONE text pass per caption: the same
masked pass gives the CLIP feature (at EOT) and the MLM states, exactly as in the reference,
and MLM trains the very attention pattern zero-shot uses. A bidirectional pass is the
textbook BERT choice; it would need a second pass over every caption.
"""
import torch.nn as nn
import torch.nn.functional as F

from ..text.augment import IGNORE


class MLMHead(nn.Module):
    def __init__(self, width, vocab_size):
        super().__init__()
        self.proj = nn.Linear(width, vocab_size)

    def forward(self, states, targets):
        """states (B, L, width), targets (B, L) with IGNORE at unmasked positions. Every position is
        scored and the unmasked ones weigh 0 (fixed shapes, no host read); no masked word: both 0."""
        picked = (targets != IGNORE).flatten()
        logits = self.proj(states).flatten(0, 1).float()
        per_token = F.cross_entropy(logits, targets.flatten(), ignore_index=IGNORE, reduction="none")
        count = picked.sum().clamp_min(1)
        correct = (logits.argmax(-1) == targets.flatten()) & picked
        return {"mlm": per_token.sum() / count, "mlm_acc": (correct.sum() / count).detach()}
