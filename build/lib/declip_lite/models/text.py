"""CLIP's text tower: token + position embeddings, pre-LN transformer, feature at EOT -> projection."""
import contextlib

import torch
import torch.nn as nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from .transformer import Transformer


class TextEncoder(nn.Module):
    def __init__(self, vocab_size, context_length, width, layers, heads, embed_dim, causal=True,
                 activation="gelu", proj_bias=False):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.randn(context_length, width) * 0.01)
        self.transformer = Transformer(width, layers, heads, activation)
        self.ln_final = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.randn(width, embed_dim) * width**-0.5)
        # OpenAI's CLIP projects with a matrix alone; the DeCLIP reference's projection has a bias
        self.proj_bias = nn.Parameter(torch.zeros(embed_dim)) if proj_bias else None
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        self.context_length, self.width, self.causal = context_length, width, causal

    def forward(self, tokens, eot_id, causal=None):
        """tokens ``(B, L)`` -> {"tokens": per-token states (B, L, width), "embed": (B, embed_dim)}.

        ``causal`` overrides the default attention: causal (CLIP, the reference) or
        bidirectional (padding masked)."""
        B, L = tokens.shape
        if L > self.context_length:
            raise ValueError(f"TextEncoder: {L} tokens exceed the context length {self.context_length}")
        causal = self.causal if causal is None else causal
        if causal:
            mask = torch.ones(L, L, dtype=torch.bool, device=tokens.device).tril()
        else:
            mask = (tokens != 0)[:, None, None, :]  # attend to every non-pad token
        x = self.token_embedding(tokens) + self.positional_embedding[:L]
        # on a CPU the math kernel is twice as fast as the flash one at a caption's ~20 tokens
        with sdpa_kernel(SDPBackend.MATH) if x.device.type == "cpu" else contextlib.nullcontext():
            x = self.ln_final(self.transformer(x, mask))
        eot = (tokens == eot_id).int().argmax(1)
        embed = x[torch.arange(B, device=x.device), eot] @ self.proj
        return {"tokens": x, "embed": embed if self.proj_bias is None else embed + self.proj_bias}
