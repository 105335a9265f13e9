"""Where a batch's random numbers come from, so that K runs' batches can be made as one.

A run draws its views, masks and EDA edits from its own (seed, step) generator. :class:`Draws`
makes exactly those calls (the same shapes, in the same order) on each run's generator and joins
the K answers along the batch, so every operation after the draws runs once over K x B samples,
and each run's rows are bit for bit the batch it would have made alone. One run: its generator,
called as before, nothing joined. Per-token draws follow each run's own caption width, then are
padded to the widest with a value that selects nothing.
"""
import torch


class Draws:
    def __init__(self, generators, batch_size, device, widths=None, positions=None):
        self.generators, self.batch_size, self.device = list(generators), batch_size, device
        self.widths, self.positions = widths, positions  # each run's caption width; where its tokens sit

    @staticmethod
    def token_positions(widths, batch_size, device):
        """Where K runs' per-token draws go in a (K x B, widest) table, flattened: run k's rows, its
        own first ``widths[k]`` columns."""
        width = max(widths)
        rows = lambda k: k * batch_size + torch.arange(batch_size)  # noqa: E731
        return torch.cat([(rows(k)[:, None] * width + torch.arange(w)).reshape(-1)
                          for k, w in enumerate(widths)]).to(device)

    @classmethod
    def of(cls, source, batch_size, device):
        """``source`` itself when it is :class:`Draws`, else one run's draws from generator ``source``."""
        return source if isinstance(source, Draws) else cls([source], batch_size, device)

    def _joined(self, draw, shape):
        parts = [draw((self.batch_size, *shape), g) for g in self.generators]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def rand(self, *shape):
        """(K x B, *shape) uniform [0, 1) draws, each run's from its own generator."""
        return self._joined(lambda s, g: torch.rand(s, generator=g, device=self.device), shape)

    def randint(self, low, high, *shape):
        return self._joined(lambda s, g: torch.randint(low, high, s, generator=g, device=self.device), shape)

    def per_token(self, draw, width, fill):
        """(K x B, width) draws of ``draw(shape, generator)``, each run's at its own caption width,
        placed at its rows' first columns (``positions``), ``fill`` elsewhere."""
        if len(self.generators) == 1:
            return draw((self.batch_size, width), self.generators[0])
        flat = torch.cat([draw((self.batch_size, w), g).reshape(-1)
                          for g, w in zip(self.generators, self.widths)])
        size = len(self.generators) * self.batch_size * width
        if len(flat) == size:  # every run as wide as the widest
            return flat.view(-1, width)
        out = torch.full((size,), fill, dtype=flat.dtype, device=flat.device)
        return out.index_copy_(0, self.positions, flat).view(-1, width)
