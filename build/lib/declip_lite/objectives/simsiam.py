"""Image self-supervision (ISS) with SimSiam (Chen & He 2021), on the projected, un-normalised
image embedding of two views:

    L_ISS = -1/2 [ cos(p1, sg(z2)) + cos(p2, sg(z1)) ],   z = projector(e), p = predictor(z)

sg = stop-gradient. The reference's widths (1024 hidden, 512 bottleneck) are parameters here.
"""
import torch.nn as nn
import torch.nn.functional as F


class BatchNorm1d(nn.BatchNorm1d):
    """BatchNorm on float32 inputs: under bf16 autocast the Linear before it gives bf16, which a
    vmapped (grouped) step's batch norm refuses beside its float32 weights. Without autocast, as
    on a CPU, it is the plain BatchNorm1d."""

    def forward(self, x):
        return super().forward(x.to(self.weight.dtype))


def _mlp(dims, last_bn):
    """Linear-BN-ReLU blocks, then a last Linear (and BN when ``last_bn``). A Linear has a bias
    exactly when no BN follows it: before a BN a bias cancels out (the reference's do)."""
    layers = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        last = i == len(dims) - 2
        bn = not last or last_bn
        layers += [nn.Linear(a, b, bias=not bn)]
        if bn:
            layers += [BatchNorm1d(b)]
        if not last:
            layers += [nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def simsiam_loss(p1, p2, z1, z2, stop_gradient=True):
    if stop_gradient:
        z1, z2 = z1.detach(), z2.detach()
    return -0.5 * (F.cosine_similarity(p1, z2, dim=-1).mean() + F.cosine_similarity(p2, z1, dim=-1).mean())


class SimSiam(nn.Module):
    """Projector: Linear-BN-ReLU x2, Linear-BN; predictor: Linear-BN-ReLU, Linear (with a bias)."""

    def __init__(self, embed_dim, proj_dim=256, pred_dim=64, stop_gradient=True):
        super().__init__()
        self.projector = _mlp([embed_dim, proj_dim, proj_dim, proj_dim], last_bn=True)
        self.predictor = _mlp([proj_dim, pred_dim, proj_dim], last_bn=False)
        # proj_dim: the width z_std is measured in
        self.stop_gradient, self.proj_dim = stop_gradient, proj_dim

    def forward(self, e1, e2):
        z1, z2 = self.projector(e1), self.projector(e2)
        loss = simsiam_loss(self.predictor(z1), self.predictor(z2), z1, z2, self.stop_gradient)
        # collapse monitor: per-dimension std of the normalised z; ~1/sqrt(d) healthy, 0 collapsed
        z_std = F.normalize(z1.detach().float(), dim=-1).std(0).mean()
        return {"simsiam": loss, "z_std": z_std}
