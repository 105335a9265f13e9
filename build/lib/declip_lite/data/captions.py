"""The ShapeCaps caption grammar: scene -> one of many true paraphrases.

Templates, synonyms, a random adjective order and partial mentions make many captions per
scene, and many scenes per caption: exactly the paraphrase structure nearest-neighbour
supervision feeds on. ``wrong_attribute_rate`` corrupts one attribute before captioning (a
noisy web caption); which captions are corrupted or swapped is decided by the dataset.
"""
import re

from .scenes import COLOUR_NAMES, DIGITS, GEOMETRIC, POSITIONS, SIZES

NOUNS = {  # shape -> [(singular, plural), ...]; the first pair is the canonical class name
    "circle": [("circle", "circles"), ("disc", "discs")],
    "square": [("square", "squares"), ("block", "blocks")],
    "triangle": [("triangle", "triangles")],
    "diamond": [("diamond", "diamonds"), ("rhombus", "rhombuses")],
    "star": [("star", "stars")],
    "cross": [("cross", "crosses"), ("plus", "pluses")],
    "hexagon": [("hexagon", "hexagons")],
    "ring": [("ring", "rings"), ("donut", "donuts")],
}
ADJECTIVES = {
    "red": ["red", "scarlet"], "orange": ["orange"], "yellow": ["yellow", "golden"],
    "green": ["green"], "cyan": ["cyan", "turquoise"], "blue": ["blue", "azure"],
    "purple": ["purple", "violet"], "pink": ["pink", "rose"],
    "small": ["small", "little", "tiny"], "medium": ["medium", "mid"], "large": ["large", "big"],
}
PLACES = {
    "left": ["on the left", "at the left", "in the left half"],
    "right": ["on the right", "at the right", "in the right half"],
    "top": ["at the top", "near the top", "in the upper half"],
    "bottom": ["at the bottom", "near the bottom", "in the lower half"],
    "middle": ["in the middle", "in the center", "at the centre"],
}
COUNT_WORDS = {1: ["a", "one", "a single"], 2: ["two", "a pair of"], 3: ["three", "a group of three"]}
PICTURE = ["picture", "photo", "drawing"]
RELATIONS = {  # (first-placed object, second-placed object); vertical: first is above
    0: (["left of", "to the left of"], ["right of", "to the right of"]),
    1: (["above", "over"], ["below", "under"]),
}
SYNONYM_GROUPS = (
    [[s for s, _ in v] for v in NOUNS.values() if len(v) > 1]
    + [[p for _, p in v] for v in NOUNS.values() if len(v) > 1]
    + [v for v in ADJECTIVES.values() if len(v) > 1] + [PICTURE]
)
ATTRIBUTE_WORDS = frozenset(  # words whose position in a caption binds a fact to an object
    [w for v in NOUNS.values() for pair in v for w in pair] + [w for v in ADJECTIVES.values() for w in v]
    + DIGITS + ["digit", "number", "left", "right", "top", "bottom", "upper", "lower", "middle", "center",
                "centre", "above", "over", "below", "under", "two", "three", "pair", "one", "single"]
)


def _noun(rng, shape, plural=False):
    if shape >= len(GEOMETRIC):
        d = DIGITS[shape - len(GEOMETRIC)]
        return rng.choice([f"digit {d}", f"number {d}", d]) if not plural else f"digits {d}"
    return rng.choice(NOUNS[GEOMETRIC[shape]])[int(plural)]


def _phrase(rng, obj, p_colour, p_size, plural=False):
    """An adjective phrase + noun, mentioning colour and size only sometimes, in either order."""
    adjs = []
    if rng.random() < p_colour:
        adjs.append(rng.choice(ADJECTIVES[COLOUR_NAMES[obj["colour"]]]))
    if rng.random() < p_size:
        adjs.append(rng.choice(ADJECTIVES[SIZES[obj["size"]]]))
    rng.shuffle(adjs)
    return " ".join(adjs + [_noun(rng, obj["shape"], plural)])


def _single(rng, obj, place):
    np_, det = _phrase(rng, obj, 0.85, 0.5), rng.choice(COUNT_WORDS[1])
    where = rng.choice(PLACES[place]) if rng.random() < 0.6 else ""
    options = [f"{det} {np_} {where}", f"there is {det} {np_} {where}",
               f"a {rng.choice(PICTURE)} of {det} {np_} {where}"]
    if where:
        options.append(f"{where} , {det} {np_}")
    if rng.random() < 0.2:
        options = [o + " on a grey background" for o in options]
    return rng.choice(options)


def _group(rng, obj, count):
    np_, num = _phrase(rng, obj, 0.85, 0.4, plural=True), rng.choice(COUNT_WORDS[count])
    return rng.choice([f"{num} {np_}", f"there are {num} {np_}", f"a {rng.choice(PICTURE)} of {num} {np_}"])


def _relation(rng, objs, vertical):
    a, b = (f"a {_phrase(rng, o, 0.9, 0.3)}" for o in objs)
    first_rel, second_rel = RELATIONS[vertical]
    if rng.random() < 0.15:  # a partial mention: both objects, no relation
        return f"{a} and {b}"
    if rng.random() < 0.5:
        return f"{a} {rng.choice(first_rel)} {b}"
    return f"{b} {rng.choice(second_rel)} {a}"


def _corrupt(rng, scene):
    """Change the first object's colour or shape to another value (within digits/geometric)."""
    obj = dict(scene["objects"][0])
    if rng.random() < 0.5:
        obj["colour"] = (obj["colour"] + rng.randrange(1, len(COLOUR_NAMES))) % len(COLOUR_NAMES)
    else:
        n, base = (len(DIGITS), len(GEOMETRIC)) if obj["shape"] >= len(GEOMETRIC) else (len(GEOMETRIC), 0)
        obj["shape"] = base + (obj["shape"] - base + rng.randrange(1, n)) % n
    return {**scene, "objects": [obj] + scene["objects"][1:]}


def caption(scene, rng, corrupt=False):
    """One caption for ``scene`` (a dict: kind, position, objects=[{shape, colour, size}, ...]);
    ``corrupt``: first change one attribute, so the caption is wrong about it."""
    if corrupt:
        scene = _corrupt(rng, scene)
    objs, kind = scene["objects"], scene["kind"]
    if kind == 0:
        text = _single(rng, objs[0], POSITIONS[scene["position"]])
    elif kind == 1:
        text = _group(rng, objs[0], len(objs))
    else:
        text = _relation(rng, objs[:2], scene["position"])
    return re.sub(r"\ba (?=[aeiou])", "an ", " ".join(text.split()))


def scene_dicts(scenes):
    """Turn a batched :class:`Scenes` into per-row dicts with one bulk transfer per tensor."""
    kind, pos, act = scenes.kind.tolist(), scenes.position.tolist(), scenes.active.tolist()
    shape, colour, size = scenes.shape.tolist(), scenes.colour.tolist(), scenes.size.tolist()
    return [{"kind": kind[i], "position": pos[i],
             "objects": [{"shape": shape[i][k], "colour": colour[i][k], "size": size[i][k]}
                         for k in range(len(act[i])) if act[i][k]]}
            for i in range(len(kind))]


TEMPLATE_WORDS = "a an of there is are and on grey background digit number digits"


def corpus():
    """Every word the grammar can produce, as one text per table entry (to build a vocabulary)."""
    texts = [TEMPLATE_WORDS, *DIGITS, *ATTRIBUTE_WORDS, *PICTURE]
    texts += [w for v in NOUNS.values() for pair in v for w in pair]
    texts += [p for v in PLACES.values() for p in v] + [c for v in COUNT_WORDS.values() for c in v]
    texts += [r for pair in RELATIONS.values() for side in pair for r in side]
    return texts
