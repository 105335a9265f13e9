"""Pure plotting functions: arrays in, a matplotlib Figure out (nothing is shown or saved here)."""
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import is_color_like


def _np(x):
    return x.detach().float().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def _wrap(text, width=28):  # whole words per line, none split
    return textwrap.fill(text, width, break_long_words=False, break_on_hyphens=False)


def show_pairs(images, captions, ncols=8, title=None):
    """A grid of images with their (wrapped) captions as titles, readable at notebook width."""
    nrows = -(-len(images) // ncols)  # rows, rounded up
    fig, axes = plt.subplots(nrows, ncols, figsize=(2 * ncols, 3.1 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, cap in zip(axes.flat, images, captions):
        ax.imshow(_np(img).transpose(1, 2, 0).clip(0, 1))
        ax.set_title(_wrap(cap, 20), fontsize=11, loc="left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def similarity_heatmaps(matrices, titles, suptitle=None):
    """Side-by-side image-text cosine-similarity matrices (rows: images, columns: captions)."""
    # constrained: room for the suptitle and the colour bars (tight_layout let them overlap the titles)
    fig, axes = plt.subplots(1, len(matrices), figsize=(3.3 * len(matrices), 3.3), squeeze=False,
                             layout="constrained")
    for ax, m, t in zip(axes[0], matrices, titles):
        im = ax.imshow(_np(m), cmap="viridis")
        ax.set(title=t, xlabel="caption", ylabel="image")
        fig.colorbar(im, ax=ax, fraction=0.046)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def smooth(values, window):
    v = np.asarray(values, dtype=float)
    if window <= 1 or len(v) < window:
        return v
    return np.convolve(v, np.ones(window) / window, mode="valid")


def loss_curves(history, keys, window=10, ax=None, title=None, label=None):
    """One curve per named term of a Trainer history, averaged over ``window`` steps (a thinned,
    shipped history over as many steps as a full one). ``label``: added to each curve's name."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 3.5))
    steps = np.array([h["step"] for h in history])
    spacing = np.median(np.diff(steps)) if len(steps) > 1 else 1
    rows = max(1, round(window / spacing))
    for k in keys:
        vals = [h[k] for h in history if k in h]
        if vals:
            x = steps[: len(vals)][rows - 1:] if len(vals) >= rows else steps[: len(vals)]
            ax.plot(x, smooth(vals, rows), label=k if label is None else f"{k}, {label}")
    ax.set(xlabel="step")
    if title:  # a second call on the same axes keeps the first one's title
        ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


NOT_TERMS = {"step", "lr", "logit_scale", "grad_norm", "pairs_per_s"}


def training_curves(history, title):
    """Every named term of a history so far and the learned scale, side by side, on a Figure
    outside pyplot (nothing to close, never shown inline): the live plot of ``live.LiveCurves``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3))
    terms, scale = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    loss_curves(history, [k for k in history[-1] if k not in NOT_TERMS], ax=terms,
                title=f"{title}: named terms")
    terms.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    scale.plot([h["step"] for h in history], [h["logit_scale"] for h in history], color="tab:red")
    scale.set(xlabel="step", title="learned scale s = 1/τ")
    fig.tight_layout()
    return fig


def logit_scale_curve(history, clamp, ax=None):
    """The learned scale s = exp(logit_scale) per step, zoomed on its own range (the clamp's
    bounds drawn where they fall inside it, named in the legend either way)."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 3.5))
    low, high = np.exp(clamp[0]), np.exp(clamp[1])
    s = [h["logit_scale"] for h in history]
    bottom, top = min(s) - 0.1 * (max(s) - min(s) + 1), max(s) + 0.2 * (max(s) - min(s) + 1)
    ax.plot([h["step"] for h in history], s, lw=2.5, color="tab:red", zorder=3, label="learned s")
    for bound, name in ((low, "floor"), (high, "ceiling")):
        if bottom <= bound <= top:
            ax.axhline(bound, ls="--", c="gray", lw=1)
    ax.plot([], [], ls="--", c="gray",
            label=f"clamp [e^{clamp[0]:g}, e^{clamp[1]:g}] = [{low:.0f}, {high:.0f}]")
    ax.set(xlabel="step", ylabel="s = exp(logit_scale) = 1/τ", ylim=(bottom, top), title="learned scale")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def accuracy_bars(results, chance=None, title="zero-shot top-1"):
    """Grouped bars: {run label: {task: accuracy}}; dashed ticks mark chance per task."""
    labels = list(results)
    tasks = [t for t in results[labels[0]] if t != "mean"]
    x, width = np.arange(len(tasks)), 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(1.1 * len(tasks) + 2, 3.5))
    for i, lab in enumerate(labels):
        ax.bar(x + i * width, [results[lab][t] for t in tasks], width, label=lab)
    if chance:
        for j, t in enumerate(tasks):
            ax.hlines(chance[t], j - width / 2, j + 0.8 - width / 2, colors="k", linestyles="dashed",
                      linewidth=1, label="chance" if j == 0 else None)  # under the task's bars, no further
    ax.set_xticks(x + 0.4 - width / 2, tasks)
    ax.set(ylim=(0, 1), ylabel="top-1", title=title)
    ax.legend(fontsize=8)
    return fig


def confusion_plot(confusion, classnames, title=None):
    """Rows normalised: each true class's share predicted as each class."""
    c = _np(confusion).astype(float)
    c = c / c.sum(1, keepdims=True).clip(1)
    fig, ax = plt.subplots(figsize=(0.45 * len(classnames) + 3, 0.45 * len(classnames) + 1.5))
    shown = ax.imshow(c, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(shown, ax=ax, fraction=0.046, label="share of the true class")
    ax.set_xticks(range(len(classnames)), classnames, rotation=60, fontsize=8)
    ax.set_yticks(range(len(classnames)), classnames, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true (rows sum to 1)", title=title)
    fig.tight_layout()
    return fig


def softmax_at_temperature(similarities, temperature, labels=None):
    """Rows of softmax(similarity / temperature): how the temperature sharpens the distribution."""
    z = _np(similarities) / temperature
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    fig, ax = plt.subplots(figsize=(6, 3))
    for i, row in enumerate(p):
        ax.plot(row, marker="o", label=None if labels is None else labels[i])
    ax.set(xlabel="caption", ylabel="probability", ylim=(0, 1.02),
           title=f"softmax at temperature {temperature:.3g} (scale {1 / temperature:.3g})")
    if labels is not None:
        ax.legend(fontsize=7)
    return fig


def retrieval_examples(images, captions, similarity, k=3, n=4):
    """For the first ``n`` captions, the ``k`` best-matching images with their similarity."""
    sim = _np(similarity)
    fig, axes = plt.subplots(n, k, figsize=(2.2 * k, 2.4 * n), squeeze=False)
    for r in range(n):
        best = np.argsort(-sim[:, r])[:k]
        for c, i in enumerate(best):
            ax = axes[r, c]
            ax.imshow(_np(images[i]).transpose(1, 2, 0).clip(0, 1))
            ax.set_title(f"{sim[i, r]:.2f}" + (" (own)" if i == r else ""), fontsize=8)
            ax.axis("off")
        axes[r, 0].text(-0.1, 0.5, _wrap(captions[r], 22), transform=axes[r, 0].transAxes, ha="right",
                        va="center", fontsize=8)
    fig.tight_layout()
    return fig


def neighbour_bars(query, neighbours, similarities):
    """A query caption and its nearest neighbours' captions as horizontal similarity bars."""
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(neighbours) + 1))
    y = np.arange(len(neighbours))[::-1]
    ax.barh(y, similarities, color="tab:blue")
    ax.set_yticks(y, [_wrap(n, 50) for n in neighbours], fontsize=8)
    low, high = min(similarities), max(similarities)
    pad = max(0.05 * (high - low), 0.005)
    ax.set(xlim=(low - 4 * pad, min(1.0, high + pad)), xlabel="cosine similarity (axis zoomed to the values)",
           title=_wrap(f"query: {query}", 70))
    fig.tight_layout()
    return fig


def mean_std_curves(curves, xlabel, ylabel="mean zero-shot top-1", logx=False, ax=None, title=None,
                    task="mean"):
    """{label: (x, rows)}, ``rows`` summaries over seeds (``Records.summarise``): one line per label
    through the means, with a ±std bar (the spread over seeds) at each point of several seeds; a
    point of one seed draws no bar, never a certain-looking zero-width one."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 3.8))
    for label, (x, rows) in curves.items():
        x = np.asarray(x, float)
        mean = np.array([r[task][0] for r in rows])
        std = np.array([r[task][1] if len(r.seeds) > 1 else np.nan for r in rows])
        ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=label)
    if logx:  # ticks at the measured points, written out (no overlapping 3x10^3-style minor labels)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(x, [f"{v:,.0f}" for v in x])
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


VERDICT_COLOURS = {"reproduced": "tab:green", "opposite": "tab:red", "inconclusive": "tab:gray"}


def forest_plot(comparisons, title="minus CLIP: mean difference and its 95 % interval", ax=None):
    """{label: report.Comparison}: each difference as a point with its confidence interval, coloured
    by its verdict; an interval that cannot be computed (one seed) draws no bar and says so."""
    fig, ax = ((ax.figure, ax) if ax is not None
               else plt.subplots(figsize=(6.5, 0.5 + 0.45 * len(comparisons))))
    for y, (label, c) in enumerate(reversed(list(comparisons.items()))):
        colour = VERDICT_COLOURS[c.verdict]
        bounded = np.isfinite(c.low) and np.isfinite(c.high)
        if bounded:
            ax.plot([c.low, c.high], [y, y], color=colour, lw=2)
        ax.plot(c.difference, y, "o", color=colour)
        note = f"{c.verdict} ({c.seeds} seeds)" if bounded else "1 seed: no interval"
        ax.annotate(note, (1.01, y), xycoords=("axes fraction", "data"), va="center", fontsize=8,
                    color=colour)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(comparisons)), list(reversed(list(comparisons))))
    ax.set(xlabel="difference in mean zero-shot top-1", title=title, ylim=(-0.6, len(comparisons) - 0.4))
    fig.tight_layout()
    return fig


def project_2d(features, method="pca", seed=0):
    """(N, 2) coordinates of (N, d) features: PCA (instant) or UMAP (umap-learn, cosine metric)."""
    x = _np(features)
    if method == "umap":
        import umap

        # one job: a seeded UMAP is serial anyway (n_jobs=1 says so, instead of a warning)
        return umap.UMAP(n_neighbors=15, min_dist=0.1, metric="cosine", random_state=seed,
                         n_jobs=1).fit_transform(x)
    x = x - x.mean(0)
    return x @ np.linalg.svd(x, full_matrices=False)[2][:2].T


def embedding_maps(points, labels, classnames, titles, suptitle=None):
    """Side-by-side 2-D maps ((N, 2) each), a point in its class's colour: one it names, or a palette's."""
    fig, axes = plt.subplots(1, len(points), figsize=(4.3 * len(points), 4), squeeze=False)
    lab, cmap = _np(labels).astype(int), plt.get_cmap("tab10" if len(classnames) <= 10 else "tab20")
    colours = classnames if all(map(is_color_like, classnames)) else cmap(np.arange(len(classnames)) % cmap.N)
    for ax, pts, title in zip(axes[0], points, titles):
        for c, (name, colour) in enumerate(zip(classnames, colours)):
            ax.scatter(pts[lab == c, 0], pts[lab == c, 1], s=5, color=colour, alpha=0.7, label=name)
        ax.set(title=title, xticks=[], yticks=[])
    axes[0, -1].legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1, 0.5))
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def word_patch_maps(image, words, similarity, title=None, columns=4):
    """The image, then one heat map per word: its cosine to every patch ((T, N)), ``columns`` a row."""
    sim = _np(similarity)
    side = int(round(sim.shape[1] ** 0.5))
    rows = -(-(len(words) + 1) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.6 * rows), layout="constrained",
                             squeeze=False)
    axes = axes.ravel()
    if title:
        fig.suptitle(title, fontsize=10)
    axes[0].imshow(_np(image).transpose(1, 2, 0).clip(0, 1))
    axes[0].set_title("image", fontsize=9)
    for ax, word, row in zip(axes[1:], words, sim):
        shown = ax.imshow(row.reshape(side, side), cmap="magma", vmin=sim.min(), vmax=sim.max())
        ax.set_title(word, fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.colorbar(shown, ax=axes[1:len(words) + 1].tolist(), shrink=0.8, label="word-patch cosine")
    return fig
