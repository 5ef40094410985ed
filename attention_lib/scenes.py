"""Synthetic scenes with captions and gold regions, for attention on images (Part IV).

Each scene is a small RGB image with 1-4 coloured shapes (circle, square, triangle; small or
large; red, green, blue or yellow) on a black background, optionally with grey clutter, and a
caption that names every object, left to right, with the relation between neighbours:

    "a small red circle left of a large blue square above a small green triangle"

Every caption word comes with the **gold region** it refers to: the (H, W) bool mask of the
object it describes for a size, colour or shape word, ``None`` for a function word (``a``,
``left``, ``of``, ``above``, ``below``). A captioner's attention map for the word "red" can
therefore be scored against the pixels of the red object, as chapter 4 scored alignments
against gold word links. The rendering is plain NumPy (no image library), and a scene set is
a deterministic function of its seed.

Relations (``y`` grows downwards): objects are sorted by the x of their centre; between
consecutive objects A and B (``dx = x_B - x_A >= 0``, ``dy = y_B - y_A``) the caption says
"A left of B" when ``dx >= |dy|``, "A above B" when ``dy > dx`` and "A below B" otherwise.

The task mirrors the one in Xu et al. (2015), Show, Attend and Tell, on data that a reader can
generate offline in a fraction of a second.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ._validate import check_int
from .data import Vocab, pad_sequences

Tensor = torch.Tensor

__all__ = [
    "SHAPES", "COLOURS", "SIZES", "RELATIONS", "SCENE_WORDS", "OBJECT_WORDS",
    "SceneObject", "Scene", "SceneBatch", "render_shape", "relation", "make_scene",
    "make_scenes", "scene_vocab", "scene_batch", "scene_batches", "scene_labels",
    "scene_label_names", "label_batches",
]

SHAPES: Tuple[str, ...] = ("circle", "square", "triangle")
#: colour name -> RGB in [0, 1]
COLOURS = {"red": (1.0, 0.1, 0.1), "green": (0.1, 0.9, 0.1), "blue": (0.2, 0.3, 1.0),
           "yellow": (1.0, 0.9, 0.1)}
#: size name -> half-size of the shape as a fraction of the image side
SIZES = {"small": 0.12, "large": 0.2}
RELATIONS: Tuple[str, ...] = ("left of", "above", "below")
#: every word a caption can contain, in a fixed order (the vocabulary's order)
SCENE_WORDS: Tuple[str, ...] = (("a",) + tuple(SIZES) + tuple(COLOURS) + SHAPES
                                + ("left", "of", "above", "below"))
#: words that name an attribute of one object (they have a gold region)
OBJECT_WORDS = frozenset(tuple(SIZES) + tuple(COLOURS) + SHAPES)
_CLUTTER_GREY = 0.45


@dataclass(eq=False)
class SceneObject:
    """One drawn shape: its attributes, centre (cx, cy) and half-size r in pixels, its pixel
    mask (H, W) bool and its bounding box (x0, y0, x1, y1), inclusive."""
    shape: str
    colour: str
    size: str
    cx: float
    cy: float
    r: float
    mask: Tensor = field(repr=False)
    box: Tuple[int, int, int, int] = (0, 0, 0, 0)

    @property
    def words(self) -> List[str]:
        return ["a", self.size, self.colour, self.shape]


@dataclass(eq=False)
class Scene:
    """A rendered scene.

    image: (3, H, W) float32 in [0, 1]; tokens: the caption's words; regions: one entry per
    token, the (H, W) bool mask of the object it names or ``None`` for a function word;
    objects: the drawn objects, left to right (the caption's order); token_object: for each
    token the index of its object in ``objects`` (-1 for a relation word).
    """
    image: Tensor
    tokens: List[str]
    regions: List[Optional[Tensor]]
    objects: List[SceneObject]
    token_object: List[int]

    @property
    def caption(self) -> str:
        return " ".join(self.tokens)


def render_shape(shape: str, cx: float, cy: float, r: float, size: int) -> np.ndarray:
    """(size, size) bool mask of a shape centred at (cx, cy) with half-size r (pixels).

    Pixel (i, j) has its centre at x = j + 0.5, y = i + 0.5. A circle of radius r, an
    axis-aligned square of half-side 0.85 r, and an upward triangle of height 2 r whose base
    is 2 r wide.
    """
    y, x = np.mgrid[0:size, 0:size] + 0.5
    if shape == "circle":
        return (x - cx) ** 2 + (y - cy) ** 2 <= r ** 2
    if shape == "square":
        return (np.abs(x - cx) <= 0.85 * r) & (np.abs(y - cy) <= 0.85 * r)
    if shape == "triangle":
        t = (y - (cy - r)) / (2 * r)  # 0 at the apex, 1 at the base
        return (t >= 0) & (t <= 1) & (np.abs(x - cx) <= r * t)
    raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")


def relation(a: SceneObject, b: SceneObject) -> str:
    """How the caption relates object ``a`` to the next object ``b`` to its right
    ("left of", "above" or "below"); see the module docstring for the rule."""
    dx, dy = b.cx - a.cx, b.cy - a.cy
    if dx >= abs(dy):
        return "left of"
    return "above" if dy > 0 else "below"


def _place(rng: np.random.Generator, image_size: int, num_objects: int, max_tries: int):
    """Draw objects one by one, each at a random free place; None when one does not fit."""
    objects: List[SceneObject] = []
    taken = np.zeros((image_size, image_size), dtype=bool)  # boxes grown by 1 px
    for _ in range(num_objects):
        for _try in range(max_tries):
            size = str(rng.choice(list(SIZES)))
            r = SIZES[size] * image_size
            cx, cy = rng.uniform(r + 0.5, image_size - r - 0.5, size=2)
            shape = str(rng.choice(SHAPES))
            mask = render_shape(shape, cx, cy, r, image_size)
            ys, xs = np.nonzero(mask)
            x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
            if not taken[max(y0 - 1, 0):y1 + 2, max(x0 - 1, 0):x1 + 2].any():
                break
        else:
            return None
        colour = str(rng.choice(list(COLOURS)))
        taken[y0:y1 + 1, x0:x1 + 1] = True
        objects.append(SceneObject(shape, colour, size, float(cx), float(cy), float(r),
                                   torch.from_numpy(mask.copy()),
                                   (int(x0), int(y0), int(x1), int(y1))))
    return objects, taken


def make_scene(rng: np.random.Generator, *, image_size: int = 32, num_objects: int = 2,
               clutter: float = 0.0, max_tries: int = 50) -> Scene:
    """One scene drawn with NumPy generator ``rng``: ``num_objects`` shapes whose bounding boxes
    do not touch (1 px apart at least), each fully inside the image, then the caption.
    ``clutter`` is the fraction of background pixels turned grey (never under an object)."""
    for _attempt in range(max_tries):  # start the scene again when an object does not fit
        placed = _place(rng, image_size, num_objects, max_tries)
        if placed is not None:
            break
    else:
        raise RuntimeError(f"could not place {num_objects} objects in a {image_size}x"
                           f"{image_size} image after {max_tries} tries; use fewer objects "
                           f"or a larger image_size")
    objects, taken = placed
    image = np.zeros((3, image_size, image_size), dtype=np.float32)
    if clutter > 0:
        speck = (rng.random((image_size, image_size)) < clutter) & ~taken
        image[:, speck] = _CLUTTER_GREY
    for o in objects:
        m = o.mask.numpy()
        image[:, m] = np.asarray(COLOURS[o.colour], dtype=np.float32)[:, None]
    objects.sort(key=lambda o: (o.cx, o.cy))
    tokens: List[str] = []
    regions: List[Optional[Tensor]] = []
    owner: List[int] = []
    for i, o in enumerate(objects):
        if i > 0:
            rel = relation(objects[i - 1], o).split()
            tokens += rel
            regions += [None] * len(rel)
            owner += [-1] * len(rel)
        tokens += o.words
        regions += [None] + [o.mask] * 3
        owner += [i] * 4
    return Scene(torch.from_numpy(image), tokens, regions, objects, owner)


def make_scenes(n: int, seed: int = 0, *, image_size: int = 32, min_objects: int = 1,
                max_objects: int = 4, clutter: float = 0.0) -> List[Scene]:
    """``n`` scenes, each with a number of objects drawn uniformly from
    [min_objects, max_objects]; the same arguments always give the same scenes.

    image_size: side H = W in pixels (>= 16); clutter: fraction of grey background pixels.
    """
    check_int("n", n, 0)
    check_int("image_size", image_size, 16)
    check_int("min_objects", min_objects, 1)
    check_int("max_objects", max_objects, min_objects)
    if not 0.0 <= float(clutter) < 1.0:
        raise ValueError(f"clutter must be a fraction in [0, 1), got {clutter!r}")
    rng = np.random.default_rng(seed)
    return [make_scene(rng, image_size=image_size,
                       num_objects=int(rng.integers(min_objects, max_objects + 1)),
                       clutter=float(clutter)) for _ in range(n)]


def scene_vocab() -> Vocab:
    """The caption vocabulary: <pad>, <bos>, <eos>, <unk>, then :data:`SCENE_WORDS`."""
    return Vocab(SCENE_WORDS)


@dataclass(eq=False)
class SceneBatch:
    """A padded batch of scenes (batch first; padding is <pad> = 0 / False).

    images: (B, 3, H, W) float; tgt_in: (B, T) <bos> + caption ids; tgt_out: (B, T) caption ids
    + <eos>; tgt_len: (B,) decoder steps (caption length + 1); regions: (B, T, H, W) bool, the
    gold region of the word in tgt_out (all False for function words, <eos> and padding);
    object_word: (B, T) bool, True where tgt_out is a size, colour or shape word.
    """
    images: Tensor
    tgt_in: Tensor
    tgt_out: Tensor
    tgt_len: Tensor
    regions: Tensor
    object_word: Tensor

    def to(self, device) -> "SceneBatch":
        return SceneBatch(*(t.to(device) for t in (self.images, self.tgt_in, self.tgt_out,
                                                    self.tgt_len, self.regions,
                                                    self.object_word)))


def scene_batch(scenes: Sequence[Scene], vocab: Optional[Vocab] = None,
                device=None) -> SceneBatch:
    """Stack and pad ``scenes`` into a :class:`SceneBatch` (see there for shapes)."""
    if len(scenes) == 0:
        raise ValueError("scenes is empty: a batch needs at least one scene")
    sizes = {tuple(s.image.shape) for s in scenes}
    if len(sizes) != 1:
        raise ValueError(f"all images of a batch must have one shape, got {sorted(sizes)}")
    vocab = vocab or scene_vocab()
    ids = [vocab.encode(s.tokens) for s in scenes]
    tgt_in, tgt_len = pad_sequences([[vocab.bos_id] + t for t in ids])
    tgt_out, _ = pad_sequences([t + [vocab.eos_id] for t in ids])
    _, h, w = scenes[0].image.shape
    regions = torch.zeros(len(scenes), tgt_out.shape[1], h, w, dtype=torch.bool)
    object_word = torch.zeros(tgt_out.shape, dtype=torch.bool)
    for b, s in enumerate(scenes):
        for t, reg in enumerate(s.regions):
            if reg is not None:
                regions[b, t] = reg
                object_word[b, t] = True
    images = torch.stack([s.image for s in scenes])  # (B, 3, H, W)
    return SceneBatch(images, tgt_in, tgt_out, tgt_len, regions, object_word).to(device)


def scene_batches(scenes: Sequence[Scene], batch_size: int, *,
                  generator: Optional[torch.Generator] = None, vocab: Optional[Vocab] = None,
                  device=None) -> Iterator[SceneBatch]:
    """Endless shuffled batches: one random permutation of ``scenes`` per epoch, drawn from
    ``generator``; the last, smaller batch of an epoch is dropped."""
    check_int("batch_size", batch_size, 1)
    if len(scenes) < batch_size:
        raise ValueError(f"need at least batch_size={batch_size} scenes, got {len(scenes)}")
    vocab = vocab or scene_vocab()
    while True:
        order = torch.randperm(len(scenes), generator=generator).tolist()
        for i in range(0, len(order) - batch_size + 1, batch_size):
            yield scene_batch([scenes[j] for j in order[i:i + batch_size]], vocab, device)


def scene_label_names(*, shapes: bool = True) -> List[str]:
    """Names of the labels of :func:`scene_labels`: the colours, then (with ``shapes``) the
    shapes."""
    return list(COLOURS) + (list(SHAPES) if shapes else [])


def scene_labels(scenes: Sequence[Scene], *, shapes: bool = True) -> Tensor:
    """(B, L) float 0/1: which colours and (with ``shapes``) which shapes occur in each scene,
    a multi-label classification target in the order of :func:`scene_label_names`;
    L = 4 + 3 or 4."""
    names = {n: i for i, n in enumerate(scene_label_names(shapes=shapes))}
    y = torch.zeros(len(scenes), len(names))
    for b, s in enumerate(scenes):
        for o in s.objects:
            y[b, names[o.colour]] = 1.0
            if shapes:
                y[b, names[o.shape]] = 1.0
    return y


def label_batches(scenes: Sequence[Scene], batch_size: int, *,
                  generator: Optional[torch.Generator] = None, shapes: bool = True,
                  device=None) -> Iterator[Tuple[Tensor, Tensor]]:
    """Endless shuffled ``(images (B, 3, H, W), labels (B, L))`` batches for the
    classification task of :func:`scene_labels`; one permutation per epoch from
    ``generator``, the last smaller batch dropped."""
    check_int("batch_size", batch_size, 1)
    if len(scenes) < batch_size:
        raise ValueError(f"need at least batch_size={batch_size} scenes, got {len(scenes)}")
    images = torch.stack([s.image for s in scenes]).to(device)  # (N, 3, H, W)
    labels = scene_labels(scenes, shapes=shapes).to(device)  # (N, L)
    while True:
        order = torch.randperm(len(scenes), generator=generator).to(images.device)
        for i in range(0, len(order) - batch_size + 1, batch_size):
            idx = order[i:i + batch_size]
            yield images[idx], labels[idx]
