"""Attention on images (Part IV): a captioner that looks, channel and spatial attention, and
patches as tokens.

* :class:`SqueezeExcitation` -- Hu et al. (2018): one gate per channel, computed from the
  channel's global average; ``x * sigmoid(W2 relu(W1 avgpool(x)))``.
* :class:`ChannelAttention`, :class:`SpatialAttention`, :class:`CBAM` -- Woo et al. (2018):
  a channel gate from average- *and* max-pooled descriptors, then a spatial gate, one weight
  per position, from a 7x7 convolution over the channel-wise mean and max.
* :class:`GridEncoder` -- a small CNN that turns an image (B, 3, H, W) into a grid of feature
  vectors (B, C, H/4, W/4), optionally with SE or CBAM blocks; flattened, the grid is a
  sequence (B, N = H W / 16, C) that a decoder can attend over.
* :class:`AttentionCaptioner` -- Xu et al. (2015), Show, Attend and Tell (soft attention): the
  grid encoder and, unchanged, the Bahdanau decoder of chapter 4
  (:class:`~attention_lib.seq2seq.BahdanauDecoder`), which attends over the N grid cells as it
  attended over source words. :class:`PlainCaptioner` is the no-attention baseline: the
  decoder of chapter 1 (:class:`~attention_lib.seq2seq.PlainDecoder`) sees only the mean of
  the grid, which is what uniform attention would give it.
* :func:`pointing_accuracy` -- the fraction of words whose attention peak falls inside the
  gold region of the object they name (the "pointing game" of Zhang et al., 2016, scored at
  the resolution of the attention grid).
* :class:`PatchEmbedding`, :class:`TinyViT` -- Dosovitskiy et al. (2021): the image cut into
  non-overlapping p x p patches, each linearly embedded, a learned position embedding and a
  [CLS] token, fed to the Transformer encoder of chapter 10.

Layouts: images (B, C, H, W) as in torch.nn.Conv2d; sequences (B, N, d) as everywhere else in
the library; the grid's cells are flattened row by row (cell (i, j) is position i * w + j).
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ._validate import check_int, check_tensor, shape_str
from .seq2seq import BahdanauDecoder, PlainDecoder, _check_tgt_in
from .train import _fit, masked_cross_entropy
from .transformer import TransformerEncoder

Tensor = torch.Tensor

__all__ = [
    "SqueezeExcitation", "ChannelAttention", "SpatialAttention", "CBAM", "GridEncoder",
    "AttentionCaptioner", "PlainCaptioner", "caption_attention", "object_word_attention",
    "region_to_grid", "pointing_hits", "pointing_accuracy", "uniform_pointing_accuracy",
    "SceneClassifier", "PatchEmbedding", "TinyViT", "cls_attention", "train_captioner",
    "train_classifier", "load_captioner", "show_scenes", "show_attention_on_image",
]


def _check_images(name: str, x, channels: Optional[int] = None) -> None:
    check_tensor(name, x, ndim=4, layout="(B, C, H, W)")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} must have C={channels} channels (axis 1) in (B, C, H, W), "
                         f"got shape {shape_str(x)}")


# --------------------------------------------------------------------------- channel/spatial
class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation block (Hu et al., 2018, eq. 2-4).

    squeeze z = avgpool(x): (B, C); excite s = sigmoid(W2 relu(W1 z)): (B, C) with
    W1: C -> C / reduction, W2: C / reduction -> C; output x * s[:, :, None, None].
    x: (B, C, H, W) -> (B, C, H, W), or ``(out, s)`` with ``return_weights=True``.
    """

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        check_int("channels", channels, 1)
        check_int("reduction", reduction, 1)
        self.channels = channels
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: Tensor, *, return_weights: bool = False):
        _check_images("x", x, self.channels)
        z = x.mean(dim=(2, 3))  # (B, C)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(z))))  # (B, C)
        out = x * s[:, :, None, None]  # (B, C, H, W)
        return (out, s) if return_weights else out


class ChannelAttention(nn.Module):
    """CBAM's channel gate (Woo et al., 2018, eq. 2).

    M_c = sigmoid(MLP(avgpool(x)) + MLP(maxpool(x))), one shared MLP C -> C/r -> C.
    x: (B, C, H, W) -> gate (B, C) (multiply with ``x * gate[:, :, None, None]``).
    """

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        check_int("channels", channels, 1)
        check_int("reduction", reduction, 1)
        self.channels = channels
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(),
                                 nn.Linear(hidden, channels))

    def forward(self, x: Tensor) -> Tensor:
        _check_images("x", x, self.channels)
        return torch.sigmoid(self.mlp(x.mean(dim=(2, 3))) + self.mlp(x.amax(dim=(2, 3))))


class SpatialAttention(nn.Module):
    """CBAM's spatial gate (Woo et al., 2018, eq. 3).

    M_s = sigmoid(conv_k([mean_c(x); max_c(x)])): one weight in (0, 1) per position.
    x: (B, C, H, W) -> gate (B, H, W) (multiply with ``x * gate[:, None]``).
    """

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        check_int("kernel_size", kernel_size, 1)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (to keep H and W), got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        _check_images("x", x)
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)  # (B, 2, H, W)
        return torch.sigmoid(self.conv(pooled))[:, 0]  # (B, H, W)


class CBAM(nn.Module):
    """Convolutional block attention module (Woo et al., 2018): channel gate, then spatial gate.

    x' = x * M_c(x); out = x' * M_s(x').
    x: (B, C, H, W) -> (B, C, H, W), or ``(out, (channel (B, C), spatial (B, H, W)))`` with
    ``return_weights=True``.
    """

    def __init__(self, channels: int, reduction: int = 4, kernel_size: int = 7):
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: Tensor, *, return_weights: bool = False):
        mc = self.channel(x)  # (B, C)
        x = x * mc[:, :, None, None]  # (B, C, H, W)
        ms = self.spatial(x)  # (B, H, W)
        out = x * ms[:, None]  # (B, C, H, W)
        return (out, (mc, ms)) if return_weights else out


def _attention_block(kind: Optional[str], channels: int) -> Optional[nn.Module]:
    if kind is None:
        return None
    if kind == "se":
        return SqueezeExcitation(channels)
    if kind == "cbam":
        return CBAM(channels)
    raise ValueError(f"attention must be None, 'se' or 'cbam', got {kind!r}")


# --------------------------------------------------------------------------- grid encoder
class GridEncoder(nn.Module):
    """A small CNN: image (B, in_channels, H, W) -> feature grid (B, channels, H/4, W/4).

    Three 3x3 convolutions (the 2nd and 3rd with stride 2) and a 1x1 convolution, with ReLU:
    each cell of the grid sees a 9x9-pixel window around its 4x4 patch, so a cell's feature
    describes what is *there*, and a decoder that needs an object must look at it. With
    ``coords`` two channels holding each pixel's x and y in [-1, 1] are appended to the input
    (so that the features know where they are, which relations such as "left of" need).
    ``attention``: ``None``, ``"se"`` or ``"cbam"`` puts that block after the 2nd and the
    4th convolution. H and W must be multiples of 4.

    forward(images, return_weights=False) -> grid (B, C, h, w), or ``(grid, weights)`` with
    the list of the attention blocks' weights (empty without blocks).
    """

    def __init__(self, in_channels: int = 3, channels: int = 64, *, coords: bool = True,
                 attention: Optional[str] = None):
        super().__init__()
        check_int("in_channels", in_channels, 1)
        check_int("channels", channels, 4)
        self.in_channels, self.channels, self.coords = in_channels, channels, coords
        quarter, half = max(4, channels // 4), channels // 2
        c0 = in_channels + (2 if coords else 0)
        self.conv1 = nn.Conv2d(c0, quarter, 3, padding=1)
        self.conv2 = nn.Conv2d(quarter, half, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(half, channels, 3, stride=2, padding=1)
        self.conv4 = nn.Conv2d(channels, channels, 1)
        self.block1 = _attention_block(attention, half)
        self.block2 = _attention_block(attention, channels)
        self.attention = attention

    @staticmethod
    def grid_size(height: int, width: int) -> Tuple[int, int]:
        """(h, w) of the grid for an image of (height, width)."""
        return height // 4, width // 4

    def forward(self, images: Tensor, *, return_weights: bool = False):
        _check_images("images", images, self.in_channels)
        b, _, h, w = images.shape
        if h % 4 or w % 4:
            raise ValueError(f"images must have H and W divisible by 4, got shape "
                             f"{shape_str(images)}")
        x = images
        if self.coords:
            ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
            xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
            gy, gx = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) each
            x = torch.cat([x, torch.stack([gx, gy]).expand(b, -1, -1, -1)], 1)  # (B, C+2, H, W)
        weights = []
        x = F.relu(self.conv2(F.relu(self.conv1(x))))  # (B, C/2, H/2, W/2)
        if self.block1 is not None:
            x, wt = self.block1(x, return_weights=True)
            weights.append(wt)
        x = F.relu(self.conv4(F.relu(self.conv3(x))))  # (B, C, H/4, W/4)
        if self.block2 is not None:
            x, wt = self.block2(x, return_weights=True)
            weights.append(wt)
        return (x, weights) if return_weights else x


class SceneClassifier(nn.Module):
    """:class:`GridEncoder` + global max pooling + a linear layer: images (B, 3, H, W) ->
    logits (B, num_classes). Max pooling, because the labels say whether something is
    *somewhere* in the image and the objects are small (an average would dilute them).
    ``attention``: ``None``, ``"se"`` or ``"cbam"`` (see GridEncoder).
    ``return_weights=True`` gives ``(logits, weights)`` with the blocks' weights."""

    def __init__(self, num_classes: int, *, channels: int = 32, attention: Optional[str] = None,
                 coords: bool = False):
        super().__init__()
        check_int("num_classes", num_classes, 1)
        self.encoder = GridEncoder(3, channels, coords=coords, attention=attention)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, images: Tensor, *, return_weights: bool = False):
        grid, weights = self.encoder(images, return_weights=True)  # (B, C, h, w)
        logits = self.head(grid.amax(dim=(2, 3)))  # (B, num_classes)
        return (logits, weights) if return_weights else logits


# --------------------------------------------------------------------------- captioners
class _Captioner(nn.Module):
    """Grid encoder + a chapter-1/4 decoder. Shared by the two captioners below."""

    decoder_cls: type = BahdanauDecoder

    def __init__(self, vocab_size: int, *, channels: int = 64, embed_dim: int = 32,
                 hidden_size: int = 64, coords: bool = True, attention: Optional[str] = None,
                 dropout: float = 0.0, pad_id: int = 0):
        super().__init__()
        check_int("vocab_size", vocab_size, 5)
        self.encoder = GridEncoder(3, channels, coords=coords, attention=attention)
        self.decoder = self.decoder_cls(vocab_size, embed_dim, hidden_size, channels,
                                        dropout=dropout, pad_id=pad_id)

    @property
    def attends(self) -> bool:
        return bool(getattr(self.decoder, "attends", False))

    def encode(self, images: Tensor, image_len: Optional[Tensor] = None):
        """images: (B, 3, H, W) -> ``(states, summary, mask)``: the grid as a sequence
        states (B, N, C) with N = h * w (row by row), its mean summary (B, C), and an
        all-True mask (B, N). The signature of ``Seq2Seq.encode``, so that
        :func:`~attention_lib.seq2seq.greedy_decode` works unchanged (``image_len`` is
        ignored: every cell of an image is real)."""
        grid = self.encoder(images)  # (B, C, h, w)
        states = grid.flatten(2).transpose(1, 2)  # (B, N, C)
        mask = torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)  # (B, N)
        return states, states.mean(1), mask

    def forward(self, images: Tensor, tgt_in: Tensor):
        """images: (B, 3, H, W), tgt_in: (B, T) int -> ``(logits (B, T, V), attn)`` with attn
        (B, T, N) for the attention captioner, ``None`` for the plain one."""
        _check_tgt_in(tgt_in, images, "images")
        states, summary, mask = self.encode(images)
        return self.decoder(tgt_in, states, summary, mask)


class AttentionCaptioner(_Captioner):
    """Show, Attend and Tell with soft attention (Xu et al., 2015), on a small grid.

    The decoder is chapter 4's :class:`~attention_lib.seq2seq.BahdanauDecoder`, unchanged:
    before writing word t, the state s_{t-1} scores every grid cell with the additive score,
    alpha_t = softmax over the N cells, and the context c_t = sum_j alpha_tj h_j is fed to the
    GRU. images (B, 3, H, W), tgt_in (B, T) -> logits (B, T, V), attention (B, T, N).
    """

    decoder_cls = BahdanauDecoder


class PlainCaptioner(_Captioner):
    """The no-attention baseline: chapter 1's :class:`~attention_lib.seq2seq.PlainDecoder`
    conditioned on the mean of the grid, the same vector at every step (uniform attention,
    frozen). images (B, 3, H, W), tgt_in (B, T) -> logits (B, T, V), ``None``."""

    decoder_cls = PlainDecoder


@torch.no_grad()
def caption_attention(model: AttentionCaptioner, images: Tensor, tgt_in: Tensor) -> Tensor:
    """Teacher-forced attention maps: row t is where the model looks while it predicts word t
    of the reference (tgt_out[:, t]). images (B, 3, H, W), tgt_in (B, T) -> (B, T, h, w)."""
    if not getattr(model, "attends", False):
        raise ValueError(f"{type(model).__name__} has no attention to show")
    was_training = model.training
    model.eval()
    _, attn = model(images, tgt_in)  # (B, T, N)
    model.train(was_training)
    h, w = model.encoder.grid_size(images.shape[2], images.shape[3])
    return attn.view(*attn.shape[:2], h, w)  # (B, T, h, w)


def object_word_attention(model: AttentionCaptioner, batch) -> Tuple[Tensor, Tensor, Tensor]:
    """The teacher-forced attention map and gold region of every object word of a
    :class:`~attention_lib.scenes.SceneBatch`: returns ``(attn (M, h, w), regions (M, H, W),
    words (M,) int)`` for the M size, colour and shape words of the batch."""
    attn = caption_attention(model, batch.images, batch.tgt_in)  # (B, T, h, w)
    sel = batch.object_word  # (B, T)
    return attn[sel], batch.regions[sel], batch.tgt_out[sel]


# --------------------------------------------------------------------------- pointing
def region_to_grid(regions: Tensor, grid: Tuple[int, int]) -> Tensor:
    """Gold regions at the attention's resolution: cell (i, j) is True when any pixel of the
    region lies in it. regions: (..., H, W) bool with H, W multiples of the grid -> (..., h, w)."""
    if not isinstance(regions, torch.Tensor) or regions.dtype != torch.bool:
        raise TypeError(f"regions must be a bool tensor (..., H, W), got "
                        f"{getattr(regions, 'dtype', type(regions).__name__)}")
    if regions.dim() < 2:
        raise ValueError(f"regions must be (..., H, W), got shape {shape_str(regions)}")
    h, w = grid
    H, W = regions.shape[-2:]
    if h < 1 or w < 1 or H % h or W % w:
        raise ValueError(f"regions of shape {shape_str(regions)} cannot be pooled onto a "
                         f"({h}, {w}) grid: H and W must be multiples of the grid's sides")
    r = regions.reshape(-1, h, H // h, w, W // w)  # (M, h, H/h, w, W/w)
    return r.any(dim=4).any(dim=2).reshape(*regions.shape[:-2], h, w)


def _check_pointing(attn: Tensor, regions: Tensor) -> None:
    check_tensor("attn", attn, ndim=3, layout="(M, h, w)")
    if not isinstance(regions, torch.Tensor) or regions.dtype != torch.bool:
        raise TypeError(f"regions must be a bool tensor (M, H, W), got "
                        f"{getattr(regions, 'dtype', type(regions).__name__)}")
    if regions.dim() != 3 or regions.shape[0] != attn.shape[0]:
        raise ValueError(f"regions must be (M, H, W) with one region per attention map: attn "
                         f"{shape_str(attn)}, regions {shape_str(regions)}")
    if attn.shape[0] and not bool(regions.flatten(1).any(1).all()):
        raise ValueError("every region must contain at least one pixel (a word without a "
                         "gold region has nothing to point at)")


def pointing_hits(attn: Tensor, regions: Tensor) -> Tensor:
    """Whether each attention map's peak falls inside its gold region.

    attn: (M, h, w) float, one attention map per word; regions: (M, H, W) bool, the pixels of
    the object the word names, H and W multiples of h and w. A hit when the grid cell with the
    largest weight (the first on ties) overlaps the region (:func:`region_to_grid`).
    Returns (M,) bool.
    """
    _check_pointing(attn, regions)
    m, h, w = attn.shape
    cells = region_to_grid(regions, (h, w)).reshape(m, h * w)  # (M, h*w)
    peak = attn.reshape(m, h * w).argmax(-1)  # (M,)
    return cells.gather(1, peak[:, None])[:, 0]


def pointing_accuracy(attn: Tensor, regions: Tensor) -> float:
    """Fraction of attention maps whose peak falls inside the gold region (see
    :func:`pointing_hits` for shapes). attn: (M, h, w); regions: (M, H, W) bool."""
    hits = pointing_hits(attn, regions)
    if hits.numel() == 0:
        raise ValueError("pointing accuracy of no words: attn and regions are empty")
    return hits.float().mean().item()


def uniform_pointing_accuracy(regions: Tensor, grid: Tuple[int, int]) -> float:
    """Expected pointing accuracy of uniform attention, whose peak is a cell drawn uniformly
    at random: the mean over words of the fraction of grid cells that overlap the region.
    regions: (M, H, W) bool; grid: (h, w)."""
    h, w = grid
    _check_pointing(torch.zeros(regions.shape[0] if isinstance(regions, torch.Tensor) else 0,
                                h, w), regions)
    if regions.shape[0] == 0:
        raise ValueError("pointing accuracy of no words: regions is empty")
    return region_to_grid(regions, grid).flatten(1).float().mean(1).mean().item()


# --------------------------------------------------------------------------- patches as tokens
class PatchEmbedding(nn.Module):
    """Cut an image into non-overlapping p x p patches and embed each linearly
    (Dosovitskiy et al., 2021, eq. 1): a Conv2d with kernel = stride = p, plus a learned
    position embedding per patch. images (B, C, H, W) -> tokens (B, N, d_model) with
    N = (H / p) * (W / p), patches row by row."""

    def __init__(self, image_size: int, patch_size: int, d_model: int, in_channels: int = 3):
        super().__init__()
        for name, v in (("image_size", image_size), ("patch_size", patch_size),
                        ("d_model", d_model), ("in_channels", in_channels)):
            check_int(name, v, 1)
        if image_size % patch_size:
            raise ValueError(f"image_size={image_size} must be a multiple of "
                             f"patch_size={patch_size}")
        self.image_size, self.patch_size, self.in_channels = image_size, patch_size, in_channels
        self.grid = (image_size // patch_size, image_size // patch_size)
        self.num_patches = self.grid[0] * self.grid[1]
        self.proj = nn.Conv2d(in_channels, d_model, patch_size, stride=patch_size)
        self.pos = nn.Parameter(torch.randn(1, self.num_patches, d_model) * 0.02)

    def forward(self, images: Tensor) -> Tensor:
        _check_images("images", images, self.in_channels)
        if tuple(images.shape[2:]) != (self.image_size, self.image_size):
            raise ValueError(f"images must be {self.image_size}x{self.image_size}, got shape "
                             f"{shape_str(images)}")
        x = self.proj(images).flatten(2).transpose(1, 2)  # (B, N, d_model)
        return x + self.pos


class TinyViT(nn.Module):
    """A tiny Vision Transformer (Dosovitskiy et al., 2021): :class:`PatchEmbedding`, a learned
    [CLS] token in front, chapter 10's ``TransformerEncoder``, and a linear head on the final
    [CLS] state. images (B, 3, H, W) -> logits (B, num_classes), or ``(logits, weights)`` with
    ``return_weights=True``: a list with one (B, num_heads, N + 1, N + 1) tensor per layer,
    token 0 being [CLS]."""

    def __init__(self, image_size: int, patch_size: int, num_classes: int, *,
                 d_model: int = 32, num_heads: int = 4, num_layers: int = 2,
                 dim_feedforward: int = 64, dropout: float = 0.0, norm_first: bool = True,
                 in_channels: int = 3):
        super().__init__()
        check_int("num_classes", num_classes, 1)
        self.patches = PatchEmbedding(image_size, patch_size, d_model, in_channels)
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model))
        self.encoder = TransformerEncoder(num_layers, d_model, num_heads, dim_feedforward,
                                          dropout, norm_first=norm_first)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    @property
    def grid(self) -> Tuple[int, int]:
        return self.patches.grid

    def forward(self, images: Tensor, *, return_weights: bool = False):
        x = self.patches(images)  # (B, N, d)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1)  # (B, N + 1, d)
        res = self.encoder(x, return_weights=return_weights)
        x, weights = res if return_weights else (res, None)
        logits = self.head(self.norm(x[:, 0]))  # (B, num_classes)
        return (logits, weights) if return_weights else logits


def cls_attention(weights: Sequence[Tensor], grid: Tuple[int, int], *,
                  layer: int = -1) -> Tensor:
    """Where [CLS] looks: the row of token 0 in one layer's weights, averaged over heads,
    without the [CLS] column, as a map over the patches.
    weights: per-layer list of (B, H, N + 1, N + 1) -> (B, h, w); each map sums to at most 1
    (the rest of the weight is on [CLS] itself)."""
    w = weights[layer]
    check_tensor("weights[layer]", w, ndim=4, layout="(B, H, N + 1, N + 1)")
    h, g = grid
    if w.shape[-1] != h * g + 1:
        raise ValueError(f"weights with shape {shape_str(w)} do not match a {h}x{g} grid "
                         f"plus [CLS] ({h * g + 1} tokens)")
    return w[:, :, 0, 1:].mean(1).reshape(-1, h, g)  # (B, h, w)


# --------------------------------------------------------------------------- training
def train_captioner(model: nn.Module, batches: Iterable, *, steps: int, lr: float = 3e-3,
                    clip: float = 1.0, pad_id: int = 0, progress: bool = True,
                    desc: str = "training") -> dict:
    """Teacher-forced training of a captioner on :class:`~attention_lib.scenes.SceneBatch`
    batches (an iterator, e.g. :func:`~attention_lib.scenes.scene_batches`), with the
    padding-aware cross-entropy of chapter 1, Adam and gradient clipping, as
    :func:`~attention_lib.train.train_seq2seq`. Returns ``{"loss": [...], "steps": steps}``."""

    def loss_fn(batch):
        logits, _ = model(batch.images, batch.tgt_in)
        return masked_cross_entropy(logits, batch.tgt_out, pad_id)

    return _fit(model, batches, loss_fn, steps=steps, lr=lr, clip=clip, progress=progress,
                desc=desc)


def train_classifier(model: nn.Module, batches: Iterable, *, steps: int, lr: float = 3e-3,
                     clip: float = 1.0, progress: bool = True, desc: str = "training") -> dict:
    """Multi-label training (binary cross-entropy per label) on ``(images, labels)`` batches:
    images (B, 3, H, W), labels (B, L) float 0/1. Returns ``{"loss": [...], "steps": steps}``."""

    def loss_fn(batch):
        images, labels = batch
        return F.binary_cross_entropy_with_logits(model(images), labels)

    return _fit(model, batches, loss_fn, steps=steps, lr=lr, clip=clip, progress=progress,
                desc=desc)


def load_captioner(kind: str = "attention", *, device=None):
    """A captioner trained by ``benchmarks/visual_attention.py`` and shipped in
    ``attention_lib/pretrained/visual_captioner_<kind>.pt`` (float16 weights), rebuilt in
    float32 on ``device`` in eval mode. kind: ``"attention"`` or ``"plain"``.
    Returns ``(model, ckpt)``; ``ckpt`` says how it was trained (``model_kwargs``,
    ``scene_kwargs`` for :func:`~attention_lib.scenes.make_scenes`, ``steps``, ...)."""
    from .pretrained import pretrained_path
    from .scenes import scene_vocab

    classes = {"attention": AttentionCaptioner, "plain": PlainCaptioner}
    if kind not in classes:
        raise ValueError(f"kind must be one of {sorted(classes)}, got {kind!r}")
    ckpt = torch.load(pretrained_path(f"visual_captioner_{kind}.pt"), map_location="cpu",
                      weights_only=True)
    model = classes[kind](len(scene_vocab()), **ckpt["model_kwargs"])
    model.load_state_dict({k: v.float() for k, v in ckpt["state_dict"].items()})
    return model.to(device or "cpu").eval(), ckpt


# --------------------------------------------------------------------------- figures
def _image_np(image: Tensor):
    check_tensor("image", image, ndim=3, layout="(3, H, W)")
    return image.detach().float().cpu().permute(1, 2, 0).clamp(0, 1).numpy()


def show_scenes(scenes: Sequence, *, ncols: int = 4, width: int = 28):
    """The images of ``scenes`` with their captions (wrapped to ``width`` characters) as
    titles. Returns the ``Figure``."""
    import textwrap

    import matplotlib.pyplot as plt

    n = len(scenes)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.3 * ncols, 2.7 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, s in zip(axes.flat, scenes):
        ax.imshow(_image_np(s.image), interpolation="nearest")
        ax.set_title("\n".join(textwrap.wrap(s.caption, width)), fontsize=7)
    fig.tight_layout()
    return fig


def show_attention_on_image(image: Tensor, maps: Tensor, *, titles: Optional[Sequence[str]] = None,
                            regions: Optional[Sequence[Optional[Tensor]]] = None,
                            row_labels: Optional[Sequence[str]] = None, cmap: str = "magma",
                            panel: float = 1.6, suptitle: str = ""):
    """Attention maps drawn over one image, one panel per map.

    image: (3, H, W); maps: (K, h, w) for one row of K maps or (R, K, h, w) for R rows (e.g.
    two models), each upsampled to (H, W) by repeating cells; titles: K column titles (e.g. the
    words); regions: K gold regions (H, W) bool (or None), drawn as cyan outlines in every row.
    Each map is scaled to its own maximum. Returns the ``Figure``.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    img = _image_np(image)
    m = maps.detach().float().cpu()
    if m.dim() == 3:
        m = m[None]
    if m.dim() != 4:
        raise ValueError(f"maps must be (K, h, w) or (R, K, h, w), got shape {shape_str(maps)}")
    r, k, h, w = m.shape
    H, W = img.shape[:2]
    if H % h or W % w:
        raise ValueError(f"maps {shape_str(maps)} do not tile an image of {H}x{W}")
    fig, axes = plt.subplots(r, k + 1, figsize=(panel * (k + 1), panel * r + 0.4),
                             squeeze=False)
    for i in range(r):
        axes[i, 0].imshow(img, interpolation="nearest")
        axes[i, 0].set_xticks([])
        axes[i, 0].set_yticks([])
        if row_labels is not None:
            axes[i, 0].set_ylabel(row_labels[i], fontsize=8)
        for j in range(k):
            ax = axes[i, j + 1]
            up = np.kron(m[i, j].numpy(), np.ones((H // h, W // w)))
            ax.imshow(img * 0.35, interpolation="nearest")
            ax.imshow(up / max(up.max(), 1e-12), cmap=cmap, alpha=0.65, vmin=0, vmax=1,
                      interpolation="nearest")
            if regions is not None and regions[j] is not None:
                ax.contour(regions[j].cpu().numpy().astype(float), levels=[0.5],
                           colors="cyan", linewidths=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0 and titles is not None:
                ax.set_title(titles[j], fontsize=9)
    axes[0, 0].set_title("image", fontsize=9)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig
