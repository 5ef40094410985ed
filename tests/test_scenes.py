"""attention_lib.scenes: synthetic scenes, their captions and gold regions.

Captions are checked against the pixels, not against the generator's bookkeeping: the colour
of a word's region is read off the image, the shape from how much of its bounding box the
region fills, the size from the box's width, and the relations from the boxes' centres.
"""
from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_rejected
from hypothesis import given
from hypothesis import strategies as st

from attention_lib.scenes import (
    COLOURS,
    OBJECT_WORDS,
    SCENE_WORDS,
    SHAPES,
    make_scenes,
    render_shape,
    scene_batch,
    scene_batches,
    scene_label_names,
    scene_labels,
    scene_vocab,
)

RELATION_WORDS = {"left", "of", "above", "below"}


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(300, seed=3, image_size=32, clutter=0.05)


def _phrases(tokens):
    """Split a caption into object phrases (4 words each) and the relations between them."""
    objs, rels, i = [], [], 0
    while i < len(tokens):
        assert tokens[i] == "a", tokens
        objs.append((i, tokens[i:i + 4]))
        i += 4
        if i < len(tokens):
            rel = ["left", "of"] if tokens[i] == "left" else [tokens[i]]
            assert tokens[i:i + len(rel)] == rel, tokens
            rels.append(" ".join(rel))
            i += len(rel)
    return objs, rels


def _box(mask: torch.Tensor):
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return xs.min().item(), ys.min().item(), xs.max().item(), ys.max().item()


def test_same_seed_same_scenes():
    a, b = make_scenes(20, seed=7, clutter=0.1), make_scenes(20, seed=7, clutter=0.1)
    for x, y in zip(a, b):
        assert torch.equal(x.image, y.image) and x.tokens == y.tokens
        assert all((r is None and s is None) or torch.equal(r, s)
                   for r, s in zip(x.regions, y.regions))
    c = make_scenes(20, seed=8, clutter=0.1)
    assert any(not torch.equal(x.image, y.image) for x, y in zip(a, c))


@given(seed=st.integers(0, 10_000), n_min=st.integers(1, 4))
def test_object_count_and_image_range(seed, n_min):
    for s in make_scenes(3, seed=seed, min_objects=n_min, max_objects=4):
        assert n_min <= len(s.objects) <= 4
        assert s.image.shape == (3, 32, 32) and s.image.dtype == torch.float32
        assert 0.0 <= s.image.min() and s.image.max() <= 1.0
        assert len(s.tokens) == len(s.regions) == 4 * len(s.objects) + sum(
            2 if t == "left" else 1 for t in s.tokens if t in ("left", "above", "below"))


def test_regions_are_exactly_the_named_objects_pixels(scenes):
    for s in scenes:
        img = s.image
        background = (img == 0).all(0) | (img == 0.45).all(0)
        covered = torch.zeros(img.shape[1:], dtype=torch.bool)
        for tok, reg in zip(s.tokens, s.regions):
            if tok not in OBJECT_WORDS:
                assert reg is None, (tok, s.caption)
                continue
            assert reg is not None and reg.dtype == torch.bool and reg.any()
            # the region is one colour, and every pixel of that colour in its (grown) box
            colour = img[:, reg]  # (3, n)
            assert (colour == colour[:, :1]).all()
            x0, y0, x1, y1 = _box(reg)
            same = (img == colour[:, :1, None]).all(0)
            window = torch.zeros_like(same)
            window[max(y0 - 1, 0):y1 + 2, max(x0 - 1, 0):x1 + 2] = True
            assert torch.equal(same & window, reg), s.caption
            covered |= reg
        # regions cover every coloured pixel, and nothing else
        assert torch.equal(covered, ~background), s.caption


def test_caption_words_match_the_drawn_pixels(scenes):
    checked_rel = 0
    for s in scenes:
        objs, rels = _phrases(s.tokens)
        boxes = []
        for start, (_, size, colour, shape) in objs:
            reg = s.regions[start + 1]
            assert reg is s.regions[start + 2] or torch.equal(reg, s.regions[start + 2])
            rgb = s.image[:, reg][:, 0]
            assert torch.allclose(rgb, torch.tensor(COLOURS[colour])), (colour, rgb)
            x0, y0, x1, y1 = _box(reg)
            width, fill = x1 - x0 + 1, reg.sum().item() / ((x1 - x0 + 1) * (y1 - y0 + 1))
            # fill of the box: square 1, circle pi/4, triangle 1/2 (up to pixelisation)
            seen = "square" if fill > 0.97 else ("circle" if fill > 0.69 else "triangle")
            assert seen == shape, (shape, fill, s.caption)
            assert (width >= 10) == (size == "large"), (size, width)
            boxes.append(((x0 + x1) / 2, (y0 + y1) / 2))
        xs = [b[0] for b in boxes]
        assert all(b >= a - 1 for a, b in zip(xs, xs[1:])), "objects are named left to right"
        for (ax, ay), (bx, by), rel in zip(boxes, boxes[1:], rels):
            dx, dy = bx - ax, by - ay
            if abs(dx - abs(dy)) < 1.5 or abs(dy) < 1.5 and dx < 1.5:
                continue  # too close to the boundary between two relations to tell by boxes
            want = "left of" if dx >= abs(dy) else ("above" if dy > 0 else "below")
            assert rel == want, (rel, dx, dy, s.caption)
            checked_rel += 1
    assert checked_rel > 200


def test_all_words_occur_and_vocab_is_fixed(scenes):
    seen = {t for s in scenes for t in s.tokens}
    assert seen == set(SCENE_WORDS)
    v = scene_vocab()
    assert v.itos[4:] == list(SCENE_WORDS) and scene_vocab().itos == v.itos


def test_render_shape_areas():
    r, n = 8.0, 64
    disc = math.pi * r * r
    assert abs(render_shape("circle", 32, 32, r, n).sum() - disc) < 0.05 * disc
    assert render_shape("square", 32, 32, r, n).sum() == pytest.approx((1.7 * r) ** 2, rel=0.15)
    assert render_shape("triangle", 32, 32, r, n).sum() == pytest.approx(2 * r * r, rel=0.15)


def test_clutter_is_grey_and_off_objects():
    s = make_scenes(5, seed=1, clutter=0.2)
    for sc in s:
        grey = (sc.image == 0.45).all(0)
        assert grey.float().mean() > 0.05
        for o in sc.objects:
            assert not (grey & o.mask).any()
    clean = make_scenes(5, seed=1, clutter=0.0)
    assert all(not (sc.image == 0.45).all(0).any() for sc in clean)


def test_batch_shapes_and_alignment(scenes):
    v = scene_vocab()
    b = scene_batch(scenes[:6], v)
    T = b.tgt_out.shape[1]
    assert b.images.shape == (6, 3, 32, 32) and b.regions.shape == (6, T, 32, 32)
    assert (b.tgt_in[:, 0] == v.bos_id).all()
    for i, s in enumerate(scenes[:6]):
        n = len(s.tokens)
        assert b.tgt_len[i] == n + 1 and b.tgt_out[i, n] == v.eos_id
        assert v.decode(b.tgt_out[i, :n].tolist()) == s.tokens
        for t, reg in enumerate(s.regions):
            assert b.object_word[i, t] == (reg is not None)
            assert torch.equal(b.regions[i, t], reg if reg is not None
                               else torch.zeros(32, 32, dtype=torch.bool))
        assert not b.regions[i, n:].any() and not b.object_word[i, n:].any()


def test_batches_are_seeded_and_cover_an_epoch(scenes):
    a = scene_batches(scenes[:40], 8, generator=torch.Generator().manual_seed(0))
    b = scene_batches(scenes[:40], 8, generator=torch.Generator().manual_seed(0))
    first = [next(a) for _ in range(5)]
    assert all(torch.equal(x.images, next(b).images) for x in first)
    epoch = torch.cat([x.images for x in first]).flatten(1)
    everything = torch.stack([s.image for s in scenes[:40]]).flatten(1)
    assert torch.equal(epoch.sort(0).values, everything.sort(0).values)  # each scene once


def test_labels(scenes):
    y = scene_labels(scenes[:20])
    names = scene_label_names()
    assert y.shape == (20, len(COLOURS) + len(SHAPES)) and len(names) == y.shape[1]
    for s, row in zip(scenes[:20], y):
        want = {o.colour for o in s.objects} | {o.shape for o in s.objects}
        assert {names[i] for i in torch.nonzero(row)[:, 0].tolist()} == want


@pytest.mark.parametrize("kwargs, exc, pattern", [
    (dict(n=-1), ValueError, "n must be"),
    (dict(n=2, image_size=8), ValueError, "image_size must be"),
    (dict(n=2, min_objects=0), ValueError, "min_objects"),
    (dict(n=2, min_objects=3, max_objects=2), ValueError, "max_objects"),
    (dict(n=2, clutter=1.5), ValueError, "clutter"),
    (dict(n=1, min_objects=12, max_objects=12), RuntimeError, "could not place"),
])
def test_bad_arguments(kwargs, exc, pattern):
    assert_rejected(lambda: make_scenes(**kwargs), exc, pattern, str(kwargs))


def test_bad_batches(scenes):
    assert_rejected(lambda: scene_batch([]), ValueError, "empty")
    other = make_scenes(1, seed=0, image_size=48)
    assert_rejected(lambda: scene_batch([scenes[0], other[0]]), ValueError, "one shape")
    assert_rejected(lambda: next(scene_batches(scenes[:3], 8)), ValueError, "at least")
    assert_rejected(lambda: render_shape("star", 4, 4, 2, 8), ValueError, "shape must be")


def test_label_batches(scenes):
    from attention_lib.scenes import label_batches
    it = label_batches(scenes[:30], 10, generator=torch.Generator().manual_seed(0))
    xs, ys = zip(*[next(it) for _ in range(3)])
    x, y = torch.cat(xs), torch.cat(ys)
    assert x.shape == (30, 3, 32, 32) and y.shape == (30, len(COLOURS) + len(SHAPES))
    for xi, yi in zip(x, y):  # every image comes with its own labels
        j = next(j for j, s in enumerate(scenes[:30]) if torch.equal(s.image, xi))
        assert torch.equal(yi, scene_labels([scenes[j]])[0])
    assert_rejected(lambda: next(label_batches(scenes[:3], 8)), ValueError, "at least")


def test_colour_only_labels(scenes):
    y = scene_labels(scenes[:10], shapes=False)
    assert y.shape == (10, len(COLOURS)) and scene_label_names(shapes=False) == list(COLOURS)
    assert torch.equal(y, scene_labels(scenes[:10])[:, :len(COLOURS)])
