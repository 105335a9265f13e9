"""Nearest-neighbour supervision (NNS): a caption's nearest neighbour in a FIFO queue of past
text features is a second, free text view of the image (DeCLIP sec. 3.3).

    L_NNS = 1/2 sum_v 1/2 [ CE(s I_v NN(T)^T) + CE(s I_v NN(T_aug)^T) ]   (image -> text only)

The queue holds detached, L2-normalised features (random unit vectors at first); look-up
happens BEFORE this step's features are enqueued (T_aug first, then T), so gradients reach only
the image side and the scale. One queue per rank, as in the reference.

The small-data trap: on a few thousand captions seen for many epochs, a caption's own older
feature is often its nearest neighbour, and NNS degenerates into plain CLIP. ``exclude_self``
stores sample ids beside the features and never returns the same sample.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .clip import one_way_loss


class NNQueue(nn.Module):
    def __init__(self, dim, size=4096, exclude_self=False):
        super().__init__()
        self.register_buffer("features", F.normalize(torch.randn(size, dim), dim=-1))
        self.register_buffer("ids", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("content", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.exclude_self = exclude_self

    @torch.no_grad()
    def similarities(self, text, ids=None):
        """Cosines of each row with every queue entry, in the queue's float32 even under bf16 autocast
        (where a third of the look-ups would tie for the top two)."""
        with torch.autocast(text.device.type, enabled=False):
            sim = F.normalize(text.to(self.features.dtype), dim=-1) @ self.features.T
        if self.exclude_self and ids is not None:
            sim = sim.masked_fill(self.ids[None] == ids[:, None], -2.0)
        return sim

    @torch.no_grad()
    def lookup(self, text, ids=None):
        """Nearest queue entry of each row: (features, cosine similarity, slot in the queue)."""
        best, where = self.similarities(text, ids).max(1)
        return self.features[where], best, where

    def age(self):
        """(size,) each slot's age rank: 0 = the oldest entry, size - 1 = the newest."""
        return (torch.arange(len(self.ids), device=self.ids.device) - self.ptr) % len(self.ids)

    @torch.no_grad()
    def enqueue(self, text, ids=None, content=None):
        n, size = len(text), len(self.features)
        slots = (self.ptr + torch.arange(n, device=text.device)) % size
        self.features[slots] = F.normalize(text.to(self.features.dtype), dim=-1)
        unknown = torch.full_like(slots, -1)  # on the device: a CUDA graph cannot copy a host scalar in
        self.ids[slots] = unknown if ids is None else ids
        self.content[slots] = unknown if content is None else content
        self.ptr.copy_((self.ptr + n) % size)


class NNS(nn.Module):
    def __init__(self, dim, queue_size=4096, exclude_self=False):
        super().__init__()
        self.queue = NNQueue(dim, queue_size, exclude_self)

    def forward(self, images, texts, scale, ids=None, content=None):
        """images: the image views' embeddings; texts: the text views' embeddings (T, T_aug).
        ``ids`` (sample ids) enable exclude_self; with ``content`` (what each pair shows) the
        diagnostics say how often the neighbour is the pair itself, or shows the same thing."""
        found = [self.queue.lookup(t, ids) for t in texts]
        loss = sum(one_way_loss(i, nn_t.to(i.dtype), scale) for i in images for nn_t, _, _ in found)
        terms = {"nns": loss / (len(images) * len(texts)),
                 "nn_similarity": torch.stack([s.mean() for _, s, _ in found]).mean()}
        rate = lambda table, mine: torch.stack([(table[w] == mine).float().mean()  # noqa: E731
                                                for _, _, w in found]).mean()
        if ids is not None:
            terms["nn_self_rate"] = rate(self.queue.ids, ids)
        if content is not None:
            terms["nn_precision"] = rate(self.queue.content, content)
        for t in reversed(texts):  # the reference's order: T_aug first, then T
            self.queue.enqueue(t.detach(), ids, content)
        return terms
