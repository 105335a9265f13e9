"""Data-flow diagrams drawn with matplotlib: boxes, arrows and labels, nothing trained. Each
returns a Figure (notebooks show it inline and save it). Notebook 01: the dual encoder; 04: the
2 x 2 views; 05: the queue; 08: FILIP's token matching."""
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch


def _canvas(width, height, title):
    fig, ax = plt.subplots(figsize=(width, height))
    ax.set(xlim=(0, width), ylim=(0, height), title=title)
    ax.axis("off")
    return fig, ax


def _box(ax, x, y, text, color="#dbe8f5", w=1.7, h=0.6):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.05", fc=color, ec="0.3"))
    ax.text(x, y, text, ha="center", va="center", fontsize=8)


def _arrow(ax, start, end, text=None, color="0.3"):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=10, color=color, lw=1.2))
    if text:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.12, text, ha="center", fontsize=7,
                color=color)


def dual_encoder():
    """CLIP: two towers, normalised embeddings, the N x N similarity matrix, two cross-entropies."""
    fig, ax = _canvas(9, 3, "CLIP: a dual encoder trained on the batch's similarity matrix")
    _box(ax, 1.0, 2.2, "N images"), _box(ax, 1.0, 0.8, "N captions")
    _box(ax, 3.2, 2.2, "image tower\n(ResNet / ViT)"), _box(ax, 3.2, 0.8, "text tower\n(Transformer)")
    (_box(ax, 5.3, 2.2, "I: N x d,\nL2-normalised", "#e6f2e6"),
     _box(ax, 5.3, 0.8, "T: N x d,\nL2-normalised", "#e6f2e6"))
    _box(ax, 7.6, 1.5, "s · I Tᵀ  (N x N)\nCE over rows + columns,\ntarget: the diagonal", "#fbe5d6",
         w=2.2, h=1.0)
    for y in (2.2, 0.8):
        _arrow(ax, (1.9, y), (2.3, y)), _arrow(ax, (4.1, y), (4.4, y)), _arrow(ax, (6.2, y), (6.5, 1.5))
    return fig


def multi_view():
    """MVS: two image views x two caption views, four CLIP losses averaged."""
    fig, ax = _canvas(9, 3.2, "MVS: every image view against every caption view")
    _box(ax, 1.0, 1.6, "image")
    _box(ax, 3.0, 2.5, "view I₁ (crop)"), _box(ax, 3.0, 0.7, "view I₂ (crop)")
    _box(ax, 8.0, 1.6, "caption")
    _box(ax, 6.0, 2.5, "T (caption)", "#e6f2e6"), _box(ax, 6.0, 0.7, "T_aug (EDA)", "#e6f2e6")
    _arrow(ax, (1.9, 1.8), (2.1, 2.4)), _arrow(ax, (1.9, 1.4), (2.1, 0.8))
    _arrow(ax, (7.1, 1.8), (6.9, 2.4)), _arrow(ax, (7.1, 1.4), (6.9, 0.8))
    for i, yi in enumerate((2.5, 0.7)):
        for t, yt in enumerate((2.5, 0.7)):
            color = ("tab:blue", "tab:orange", "tab:green", "tab:red")[2 * i + t]
            ax.add_patch(FancyArrowPatch((3.9, yi), (5.1, yt), arrowstyle="<|-|>", mutation_scale=9,
                                         color=color))
    ax.text(4.5, 1.6, "4 CLIP losses,\naveraged", ha="center", va="center", fontsize=8,
            bbox=dict(fc="white", ec="0.6"))
    return fig


def nn_queue():
    """NNS: look up the nearest past caption feature in a FIFO queue, then enqueue this batch."""
    size = 8
    fig, ax = _canvas(9, 3, "NNS: a queue of past caption features supplies a second caption")
    for i in range(size):
        _box(ax, 1.0 + 0.9 * i, 2.3, f"T₋{size - i}", "#eeeeee" if i else "#fbe5d6", w=0.75, h=0.45)
    ax.text(1.0, 2.75, "oldest: replaced next", fontsize=7, ha="center")
    ax.text(1.0 + 0.9 * (size - 1), 2.75, "newest", fontsize=7, ha="center")
    _box(ax, 1.5, 0.7, "this batch's\ncaption feature T")
    _box(ax, 4.8, 0.7, "NN(T): highest cosine\n(T's own too, unless\nexclude_self)", "#e6f2e6", w=2.2)
    _box(ax, 7.9, 0.7, "CE(s · I NN(T)ᵀ)\nimage → text only", "#fbe5d6", w=1.9)
    _arrow(ax, (2.4, 0.9), (4.3, 1.95), "1. look up")
    _arrow(ax, (2.4, 0.6), (3.7, 0.6)), _arrow(ax, (5.9, 0.7), (6.9, 0.7))
    _arrow(ax, (1.5, 1.0), (1.0, 2.0), "2. enqueue", color="tab:red")
    return fig


def filip_matching():
    """FILIP: each patch finds its best-matching token; the logit averages those maxima."""
    fig, ax = _canvas(9, 3.2, "FILIP: token-wise late interaction (image → text)")
    words, best = ["a", "red", "star", "left"], [1, 2, 2, 1, 3, 0]  # each patch's best token, for the picture
    for p, t in enumerate(best):
        _box(ax, 1.2, 2.8 - 0.45 * p, f"patch {p + 1}", "#dbe8f5", w=1.2, h=0.35)
        _arrow(ax, (1.85, 2.8 - 0.45 * p), (4.05, 2.6 - 0.6 * t), color="0.5")
    for t, word in enumerate(words):
        _box(ax, 4.6, 2.6 - 0.6 * t, word, "#e6f2e6", w=1.0, h=0.4)
    ax.text(7.3, 1.6, "logit(i, l) =\nmean over patches of\nmax over tokens of\ns_d ⟨x_p, y_t⟩",
            ha="center", va="center", fontsize=8, bbox=dict(fc="#fbe5d6", ec="0.3"))
    return fig
