"""Self-attention, convolution and recurrence, measured: FLOPs, sequential steps, path length.

Vaswani et al. (2017), Table 1, compares the three kinds of layer that map a sequence of
n vectors of size d to another one:

===========================  ==============  ================  ===================
layer                        FLOPs           sequential steps  maximum path length
===========================  ==============  ================  ===================
self-attention               O(n^2 d)        O(1)              O(1)
recurrent                    O(n d^2)        O(n)              O(n)
convolution                  O(k n d^2)      O(1)              O(log_k n)
self-attention (restricted)  O(r n d)        O(1)              O(n/r)
===========================  ==============  ================  ===================

The convolution's O(log_k n) is for dilated convolutions; a stack of plain (contiguous)
convolutions needs O(n/k) layers (Zhang et al., Dive into Deep Learning, section 11.6),
which is what :data:`TEXTBOOK` lists and :func:`path_lengths` measures.

This module holds the tools that **measure** each column instead of stating it:

* layer factories (:func:`make_layer`): a same-length ``Conv1d`` of odd kernel size k
  (:class:`ConvLayer`), a GRU (:class:`RecurrentLayer`), and single-head self-attention with
  Q, K, V and output projections (:class:`SelfAttentionLayer`), all mapping (B, N, d) to
  (B, N, d); and (not one of ``LAYER_KINDS``) ``"restricted"``, self-attention over a
  neighbourhood of ``kernel_size`` positions (:class:`RestrictedSelfAttentionLayer`);
* :func:`count_flops`: FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode`` while the
  call runs. It counts the matrix products and convolutions (2 FLOPs per multiply-add), not
  element-wise operations. On the CPU, ``nn.GRU`` runs as separate ``aten`` ops: one matrix
  product for the input side of all steps, then one per time step, each of them counted (on
  CUDA it is one fused cuDNN kernel that the counter does not break down: count on the CPU).
  :func:`layer_flops` is the closed form the counts are tested against;
* :func:`sequential_steps`: the **critical path** of the call, i.e. the longest chain of
  tensor operations each of which needs the previous one's result. Operations off that chain
  could run in parallel; the chain cannot. Counted by watching every ``aten`` op and its
  inputs, it stays constant in n for convolution and attention and grows as n for the GRU,
  whose step t needs the state of step t - 1 (on the CPU; a fused cuDNN GRU is one op);
* :func:`path_lengths`: for every pair (i, j), the fewest layers after which output i depends
  on input j, found from gradients (``d out_i / d in_j != 0``) of stacks of 1, 2, ... layers.
  For the recurrent layer one "layer" of the path is one application of the recurrent cell:
  its output i after L cell steps is :meth:`RecurrentLayer.forward` with ``max_steps=L``;
* :func:`fit_exponent` (log-log least squares, y ~ x^p) and :func:`crossover` (where one
  measured curve overtakes another);
* :func:`time_call` (median or minimum, wall or CPU time) and :func:`measure_layer`, which
  collects all of it and the peak tensor memory of
  :func:`attention_lib.efficient.memory.peak_memory`.

Reference: Vaswani et al. (2017), "Attention is all you need", section 4 and Table 1.
"""
from __future__ import annotations

import math
import statistics
import time
from typing import Callable, Dict, NamedTuple, Optional, Sequence

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from ._validate import check_int, check_seq, check_tensor, shape_str
from .efficient.memory import peak_memory
from .efficient.sparse import sliding_window_attention
from .functional import reference_attention

Tensor = torch.Tensor

__all__ = ["LAYER_KINDS", "TEXTBOOK", "ConvLayer", "RecurrentLayer", "SelfAttentionLayer",
           "RestrictedSelfAttentionLayer",
           "make_layer", "stack_layers", "layer_flops", "count_flops", "sequential_steps",
           "path_lengths", "max_path_length", "fit_exponent", "crossover", "time_call",
           "LayerCost", "measure_layer"]

#: The three kinds of layer, by the names :func:`make_layer` takes.
LAYER_KINDS = ("conv", "rnn", "attention")

#: Vaswani et al. (2017), Table 1, with the exponents each entry predicts, except the
#: convolution's path: Table 1 gives O(log_k n) for dilated convolutions; this is the plain
#: (non-dilated) convolution's O(n/k) (Zhang et al., Dive into Deep Learning, 11.6). ``flops_exponents``: of n, d and k in the FLOP count;
#: ``sequential_exponent`` and ``path_exponent``: of n.
TEXTBOOK: Dict[str, dict] = {
    "conv": {"flops": "O(k n d^2)", "flops_exponents": {"n": 1, "d": 2, "k": 1},
             "sequential": "O(1)", "sequential_exponent": 0,
             "path": "O(n/k)", "path_exponent": 1},
    "rnn": {"flops": "O(n d^2)", "flops_exponents": {"n": 1, "d": 2},
            "sequential": "O(n)", "sequential_exponent": 1,
            "path": "O(n)", "path_exponent": 1},
    "attention": {"flops": "O(n^2 d)", "flops_exponents": {"n": 2, "d": 1},
                  "sequential": "O(1)", "sequential_exponent": 0,
                  "path": "O(1)", "path_exponent": 0},
}


class ConvLayer(nn.Module):
    """One same-length 1-D convolution over the sequence: output i sees inputs i - k//2 ..
    i + k//2 (zero padding at the ends).

    ``x: (B, N, d_model) -> (B, N, d_model)``; ``kernel_size`` k must be odd. Costs
    2 k N d_model^2 FLOPs (Vaswani et al., 2017, Table 1: O(k n d^2)).
    Equivalent code: ``nn.Conv1d(d, d, k, padding=k // 2)(x.transpose(1, 2)).transpose(1, 2)``.
    """

    def __init__(self, d_model: int, kernel_size: int = 3, *, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        check_int("d_model", d_model)
        check_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (a same-length convolution centred on "
                             f"each position), got {kernel_size}")
        self.d_model, self.kernel_size = d_model, kernel_size
        self.conv = nn.Conv1d(d_model, d_model, kernel_size, padding=kernel_size // 2,
                              bias=bias, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        check_seq("x", x, self.d_model, "d_model", nonempty=True)
        return self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, N, d_model)


class RecurrentLayer(nn.Module):
    """A one-layer GRU (Cho et al., 2014) over the sequence: output i is the state after
    reading inputs 0 .. i.

    ``x: (B, N, d_model) -> (B, N, d_model)``. Costs 12 N d_model^2 FLOPs: three gates, each
    a product with the input and one with the previous state (Table 1: O(n d^2)).

    ``max_steps=L`` truncates the recurrence: output i is the state after the L cell steps
    over inputs i - L + 1 .. i, started from a zero state (fewer steps near the start). Input
    j then reaches output i through i - j + 1 applications of the cell, which is how
    :func:`path_lengths` measures the recurrent path. With ``L >= N`` it equals the full GRU.
    """

    def __init__(self, d_model: int, *, bias: bool = True, device=None, dtype=None):
        super().__init__()
        check_int("d_model", d_model)
        self.d_model = d_model
        self.gru = nn.GRU(d_model, d_model, batch_first=True, bias=bias, device=device,
                          dtype=dtype)

    def forward(self, x: Tensor, *, max_steps: Optional[int] = None) -> Tensor:
        check_seq("x", x, self.d_model, "d_model", nonempty=True)
        if max_steps is None:
            return self.gru(x)[0]  # (B, N, d_model)
        check_int("max_steps", max_steps)
        b, n, d = x.shape
        rows = torch.arange(b, device=x.device).repeat_interleave(n)  # (B * N,)
        cols = torch.arange(n, device=x.device).repeat(b)  # (B * N,)
        return self._window_states(x, max_steps, rows, cols).reshape(b, n, d)  # (B, N, d)

    def _window_states(self, x: Tensor, max_steps: int, rows: Tensor, cols: Tensor) -> Tensor:
        """States after at most ``max_steps`` cell steps ending at x[rows, cols]: (M, d) for
        M index pairs. Each window is one sequence of a packed batch, so padding is never read."""
        steps = min(max_steps, x.shape[1])
        start = (cols - steps + 1).clamp(min=0)  # (M,)
        lengths = cols - start + 1  # (M,)
        pos = start[:, None] + torch.arange(steps, device=x.device)  # (M, steps)
        pos = torch.minimum(pos, cols[:, None])  # right padding repeats the last input
        windows = x[rows[:, None], pos]  # (M, steps, d)
        packed = nn.utils.rnn.pack_padded_sequence(windows, lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        _, h_last = self.gru(packed)  # (1, M, d)
        return h_last[0]  # (M, d)


class SelfAttentionLayer(nn.Module):
    """Single-head self-attention with its projections: ``out_proj(softmax(q k^T / sqrt(d)) v)``
    with ``q, k, v = q_proj(x), k_proj(x), v_proj(x)``.

    ``x: (B, N, d_model) -> (B, N, d_model)``. The score and weight matrices are (N, N), as in
    :func:`~attention_lib.functional.reference_attention`. Costs 8 N d^2 FLOPs for the four
    projections plus 4 N^2 d for the scores and the weighted sum; Table 1's O(n^2 d) is the
    second term, which dominates when N > 2 d. Same parameters as
    ``nn.MultiheadAttention(d_model, num_heads=1)``. ``is_causal=True`` hides keys j > i.
    """

    def __init__(self, d_model: int, *, bias: bool = True, device=None, dtype=None):
        super().__init__()
        check_int("d_model", d_model)
        self.d_model = d_model
        kw = dict(bias=bias, device=device, dtype=dtype)
        self.q_proj = nn.Linear(d_model, d_model, **kw)
        self.k_proj = nn.Linear(d_model, d_model, **kw)
        self.v_proj = nn.Linear(d_model, d_model, **kw)
        self.out_proj = nn.Linear(d_model, d_model, **kw)

    def forward(self, x: Tensor, *, is_causal: bool = False) -> Tensor:
        check_seq("x", x, self.d_model, "d_model", nonempty=True)
        q, k, v = (p(x)[:, None] for p in (self.q_proj, self.k_proj, self.v_proj))  # (B, 1, N, d)
        out = reference_attention(q, k, v, is_causal=is_causal)  # (B, 1, N, d)
        return self.out_proj(out[:, 0])  # (B, N, d_model)


class RestrictedSelfAttentionLayer(SelfAttentionLayer):
    """Self-attention restricted to a neighbourhood of ``window`` positions centred on each
    query (Vaswani et al., 2017, Table 1, last row: "self-attention (restricted)"): query i
    attends to keys i - window//2 .. i + window//2 only.

    ``x: (B, N, d_model) -> (B, N, d_model)``; ``window`` r must be odd. The same parameters
    as :class:`SelfAttentionLayer`. Only the scores inside the band are computed, by
    :func:`~attention_lib.efficient.sparse.sliding_window_attention` (blocks of r // 2
    positions, each reading its neighbour blocks): O(r N d) FLOPs for the scores and the
    weighted sum, plus 8 N d^2 for the projections. Stacked, output i reaches input j after
    ceil(|i - j| / (r // 2)) layers: Table 1's maximum path length O(n / r).
    Equivalent code: ``reference_attention(q, k, v, sliding_window_mask(N, r // 2))`` between
    the projections of :class:`SelfAttentionLayer`.
    """

    def __init__(self, d_model: int, window: int = 3, *, bias: bool = True, device=None,
                 dtype=None):
        super().__init__(d_model, bias=bias, device=device, dtype=dtype)
        check_int("window", window)
        if window % 2 == 0 or window < 3:
            raise ValueError(f"window must be odd and >= 3 (a neighbourhood centred on each "
                             f"position), got {window}")
        self.window = window

    def forward(self, x: Tensor) -> Tensor:
        check_seq("x", x, self.d_model, "d_model", nonempty=True)
        q, k, v = (p(x)[:, None] for p in (self.q_proj, self.k_proj, self.v_proj))  # (B, 1, N, d)
        out = sliding_window_attention(q, k, v, self.window // 2)  # (B, 1, N, d)
        return self.out_proj(out[:, 0])  # (B, N, d_model)


_CLASSES = {"conv": ConvLayer, "rnn": RecurrentLayer, "attention": SelfAttentionLayer,
            "restricted": RestrictedSelfAttentionLayer}


def _check_kind(kind) -> None:
    if kind not in _CLASSES:
        raise ValueError(f"kind must be one of {tuple(_CLASSES)}, got {kind!r}")


@torch.no_grad()
def _init_(module: nn.Module, generator: torch.Generator, fan_in: int) -> None:
    # PyTorch's default range for these layers, uniform in +-1/sqrt(fan_in), drawn from
    # `generator` (fan_in = d for the linear maps and the GRU, d k for the convolution).
    bound = 1.0 / math.sqrt(fan_in)
    for p in module.parameters():
        u = torch.rand(p.shape, generator=generator, dtype=torch.float64)
        p.copy_((2 * u - 1) * bound)


def make_layer(kind: str, d_model: int, *, kernel_size: int = 3,
               generator: Optional[torch.Generator] = None, device=None,
               dtype=None) -> nn.Module:
    """A layer of ``kind`` in ``LAYER_KINDS`` mapping (B, N, d_model) to (B, N, d_model).

    ``"conv"``: :class:`ConvLayer` with ``kernel_size``; ``"rnn"``: :class:`RecurrentLayer`;
    ``"attention"``: :class:`SelfAttentionLayer`; ``"restricted"``:
    :class:`RestrictedSelfAttentionLayer` over a neighbourhood of ``kernel_size``. With a CPU ``generator``, the weights are
    drawn from it (uniform in +-1/sqrt(fan_in), PyTorch's default range), so the layer is
    the same on every device; without, PyTorch's default initialisation is used.
    """
    _check_kind(kind)
    kw = dict(device=device, dtype=dtype)
    if kind in ("conv", "restricted"):
        layer = _CLASSES[kind](d_model, kernel_size, **kw)
    else:
        layer = _CLASSES[kind](d_model, **kw)
    if generator is not None:
        _init_(layer, generator, d_model * (kernel_size if kind == "conv" else 1))
    return layer


def stack_layers(kind: str, d_model: int, num_layers: int, *, kernel_size: int = 3,
                 generator: Optional[torch.Generator] = None, device=None,
                 dtype=None) -> nn.Sequential:
    """``num_layers`` independently initialised layers of ``kind``, one after the other.

    ``x: (B, N, d_model) -> (B, N, d_model)``. No residual connections or normalisation:
    what reaches output i after L layers is exactly what the layers' connectivity allows.
    """
    check_int("num_layers", num_layers)
    return nn.Sequential(*[make_layer(kind, d_model, kernel_size=kernel_size,
                                      generator=generator, device=device, dtype=dtype)
                           for _ in range(num_layers)])


def layer_flops(kind: str, seq_len: int, d_model: int, *, kernel_size: int = 3,
                batch_size: int = 1) -> int:
    """Closed-form FLOPs of one forward call of :func:`make_layer`'s layers, counting matrix
    products and convolutions only (2 per multiply-add), as ``FlopCounterMode`` does.

    With B = batch_size, n = seq_len, d = d_model, k = kernel_size:
    conv 2 B k n d^2; rnn 12 B n d^2 (3 gates x (input + state) products);
    attention 8 B n d^2 (q, k, v, out projections) + 4 B n^2 d (scores and weighted sum),
    the same as :func:`attention_lib.multihead.attention_cost` with one head; restricted
    8 B n d^2 + 12 B n w d with w = k // 2 (each block of w queries scores 3 w keys; n
    rounded up to a multiple of w).
    """
    _check_kind(kind)
    for name, val in (("seq_len", seq_len), ("d_model", d_model), ("kernel_size", kernel_size),
                      ("batch_size", batch_size)):
        check_int(name, val)
    b, n, d, k = batch_size, seq_len, d_model, kernel_size
    if kind == "restricted":
        # blocks of w = k // 2 queries (n if shorter), each scoring the keys of its
        # neighbour blocks within reach (one on each side when the blocks are w long)
        block = min(k // 2, n)
        padded, keys = math.ceil(n / block) * block, (2 * math.ceil(k // 2 / block) + 1) * block
        return 8 * b * n * d * d + 4 * b * padded * keys * d
    if kind == "conv":
        return 2 * b * k * n * d * d
    if kind == "rnn":
        return 12 * b * n * d * d
    return 8 * b * n * d * d + 4 * b * n * n * d


def count_flops(fn: Callable, *args, **kwargs) -> int:
    """FLOPs of ``fn(*args, **kwargs)`` counted by ``torch.utils.flop_counter.FlopCounterMode``
    (matrix products and convolutions, 2 FLOPs per multiply-add; element-wise operations such
    as softmax or the GRU's gate nonlinearities are not counted). Runs under ``no_grad``.

    Works on any device, including ``meta`` tensors (shapes only, nothing computed), which
    makes counting large sizes free.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


class _CriticalPath(TorchDispatchMode):
    """Depth of every storage: 1 + the deepest input of the op that last wrote it."""

    def __init__(self):
        super().__init__()
        self.depth: dict = {}  # storage key -> depth
        self.ops = 0
        self.longest = 0

    @staticmethod
    def _keys(tree):
        keys = []
        for t in tree_leaves(tree):
            if isinstance(t, torch.Tensor):
                keys.append((t.device, t.untyped_storage().data_ptr()))
        return keys

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        in_keys = self._keys((args, kwargs))
        out_keys = self._keys(out)
        base = max((self.depth.get(k, 0) for k in in_keys), default=0)
        mutates = func._schema.is_mutable
        if not out_keys or (not mutates and set(out_keys) <= set(in_keys)):
            return out  # a view or an alias (transpose, split, ...): no work, no step
        self.ops += 1
        new = base + 1
        self.longest = max(self.longest, new)
        targets = set(out_keys) if mutates else set(out_keys) - set(in_keys)
        for k in targets:
            self.depth[k] = new
        return out


def sequential_steps(fn: Callable, *args, **kwargs) -> int:
    """The critical path of ``fn(*args, **kwargs)``: the longest chain of dependent ``aten``
    operations, each of which reads a tensor the previous one wrote.

    Every operation that computes something (not a view or an alias) is one step; its depth
    is one more than the deepest tensor it reads (inputs that existed before the call have
    depth 0; an in-place operation deepens the tensor it writes). The largest depth is the
    number of steps that must run one after another however many processors there are.
    Runs under ``no_grad``; needs real tensors (not ``meta``), since it follows storages.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    for t in tree_leaves((args, kwargs)):
        if isinstance(t, torch.Tensor) and t.device.type == "meta":
            raise ValueError("sequential_steps follows tensor storages: pass real tensors, "
                             f"not meta ones (got shape {shape_str(t)} on meta)")
    tracker = _CriticalPath()
    with torch.no_grad(), tracker:
        fn(*args, **kwargs)
    return tracker.longest


def _dependence(out: Tensor, x: Tensor, cotangent: Tensor, retain: bool) -> Tensor:
    """(N, N) bool: [i, j] = output i depends on input j (some d out_i / d x_j != 0).

    ``x`` is one sequence repeated N times along the batch, (N, N, d); batch row i asks about
    output i only (``cotangent`` (N, N, d) is zero except at [i, i]), so one backward pass
    gives every row of the Jacobian's pattern (the layers treat batch rows independently).
    """
    (g,) = torch.autograd.grad((out * cotangent).sum(), x, retain_graph=retain)  # (N, N, d)
    return g.abs().amax(dim=-1) > 0  # (N, N)


def path_lengths(kind: str, seq_len: int, d_model: int = 4, *, kernel_size: int = 3,
                 max_layers: Optional[int] = None,
                 generator: Optional[torch.Generator] = None) -> Tensor:
    """For every output i and input j, the fewest layers L after which out_i depends on in_j.

    Returns an (N, N) int64 tensor ``P`` with ``P[i, j] = L``, or -1 when output i does not
    depend on input j even after ``max_layers`` layers (default ``seq_len``). Found from
    gradients: a stack of L layers of ``kind`` (:func:`stack_layers`, random weights from
    ``generator``, float64) is run on a random input, and ``d out_i / d in_j`` is computed for
    every i; it is exactly zero where no path exists. For ``"rnn"`` a layer of the path is
    one step of the recurrent cell: the output after L steps is
    ``RecurrentLayer(max_steps=L)`` (so ``P[i, j] = i - j + 1`` for j <= i; a unidirectional
    GRU never lets output i see a later input j > i).
    """
    _check_kind(kind)
    check_int("seq_len", seq_len)
    check_int("d_model", d_model)
    max_layers = seq_len if max_layers is None else max_layers
    check_int("max_layers", max_layers)
    gen = torch.Generator().manual_seed(0) if generator is None else generator
    n = seq_len
    x = torch.randn(1, n, d_model, generator=gen, dtype=torch.float64)
    x = x.expand(n, n, d_model).clone().requires_grad_()  # (N, N, d): row i asks about out_i
    cot = torch.zeros(n, n, d_model, dtype=torch.float64)
    rows = torch.arange(n)
    cot[rows, rows] = torch.randn(n, d_model, generator=gen, dtype=torch.float64)
    paths = torch.full((n, n), -1, dtype=torch.long)
    if kind == "rnn":
        layer = make_layer("rnn", d_model, generator=gen, dtype=torch.float64)
        for depth in range(1, max_layers + 1):
            # = layer(x, max_steps=depth), but only the outputs [i, i] that row i asks about
            diag = layer._window_states(x, depth, rows, rows)  # (N, d)
            out = torch.zeros_like(x).index_put((rows, rows), diag)  # (N, N, d)
            dep = _dependence(out, x, cot, retain=False)
            paths[dep & (paths < 0)] = depth
        return paths
    stack = stack_layers(kind, d_model, max_layers, kernel_size=kernel_size, generator=gen,
                         dtype=torch.float64)
    h = x
    for depth, layer in enumerate(stack, start=1):
        h = layer(h)  # (N, N, d): the output of `depth` stacked layers
        dep = _dependence(h, x, cot, retain=True)
        paths[dep & (paths < 0)] = depth
        if bool((paths >= 0).all()):
            break  # every output already sees every input
    return paths


def max_path_length(paths: Tensor) -> int:
    """The longest of the shortest paths in ``paths`` (N, N) from :func:`path_lengths`, over
    the pairs that are connected at all (entries >= 0)."""
    check_tensor("paths", paths, ndim=2, floating=False, layout="(N, N)")
    connected = paths[paths >= 0]
    if connected.numel() == 0:
        raise ValueError(f"paths {shape_str(paths)} connects no pair (all entries are -1)")
    return int(connected.max())


def fit_exponent(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The exponent p of the power law y ~ c x^p that fits best in log-log space: the
    least-squares slope of log y against log x.

    xs, ys: positive numbers, the same count, at least two distinct xs.
    """
    xs, ys = [float(x) for x in xs], [float(y) for y in ys]
    if len(xs) != len(ys):
        raise ValueError(f"xs and ys must have the same length, got {len(xs)} and {len(ys)}")
    if len(set(xs)) < 2:
        raise ValueError(f"fit_exponent needs at least two distinct xs, got {xs}")
    for name, vals in (("xs", xs), ("ys", ys)):
        if any(not (v > 0) or math.isinf(v) for v in vals):
            raise ValueError(f"{name} must be positive and finite for a log-log fit, got {vals}")
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def crossover(xs: Sequence[float], ya: Sequence[float], yb: Sequence[float]) -> Optional[float]:
    """The first x at which curve ``ya`` overtakes ``yb`` (ya - yb changes sign), interpolated
    linearly in log x and log(ya / yb) between the two measured points around it.

    Returns None when the curves do not cross within ``xs``; ``xs[0]`` when they are equal
    there. xs increasing; all values positive.
    """
    xs, ya, yb = [float(v) for v in xs], [float(v) for v in ya], [float(v) for v in yb]
    if not (len(xs) == len(ya) == len(yb)) or len(xs) < 2:
        raise ValueError(f"xs, ya and yb need the same length >= 2, got {len(xs)}, {len(ya)} "
                         f"and {len(yb)}")
    if any(b <= a for a, b in zip(xs, xs[1:])):
        raise ValueError(f"xs must be increasing, got {xs}")
    if any(not (v > 0) for v in xs + ya + yb):
        raise ValueError("xs, ya and yb must be positive (the interpolation is in log space)")
    r = [math.log(a / b) for a, b in zip(ya, yb)]
    if r[0] == 0:
        return xs[0]
    for i in range(1, len(xs)):
        if r[i] == 0:
            return xs[i]
        if (r[i - 1] < 0) != (r[i] < 0):
            t = r[i - 1] / (r[i - 1] - r[i])
            return math.exp(math.log(xs[i - 1]) + t * (math.log(xs[i]) - math.log(xs[i - 1])))
    return None


def _sync(args) -> None:
    for t in tree_leaves(args):
        if isinstance(t, torch.Tensor) and t.device.type == "cuda":
            torch.cuda.synchronize(t.device)
            return


def time_call(fn: Callable, *args, repeats: int = 5, warmup: int = 1, reduce: str = "median",
              clock: str = "wall", **kwargs) -> float:
    """Time in seconds of ``fn(*args, **kwargs)``: the median (``reduce="median"``) or the
    minimum (``reduce="min"``) of ``repeats`` runs, after ``warmup`` runs that are not timed.
    Under ``no_grad``.

    ``clock="wall"``: elapsed time (``time.perf_counter``; CUDA is synchronised around each
    run). ``clock="cpu"``: CPU time of this process (``time.process_time``), for work on the
    CPU: it leaves out the time the process waits for a core while other processes run, which
    on a busy shared machine can swamp the measurement. With one torch thread the two agree
    on an idle machine; with several, CPU time adds up the threads. On a busy machine the
    minimum of wall times is the steadier of the two wall estimates: other processes only
    ever slow a run down.
    """
    check_int("repeats", repeats)
    check_int("warmup", warmup, 0)
    if reduce not in ("median", "min"):
        raise ValueError(f"reduce must be 'median' or 'min', got {reduce!r}")
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
    now = time.perf_counter if clock == "wall" else time.process_time
    times = []
    with torch.no_grad():
        for r in range(warmup + repeats):
            _sync((args, kwargs))
            t0 = now()
            fn(*args, **kwargs)
            _sync((args, kwargs))
            if r >= warmup:
                times.append(now() - t0)
    return statistics.median(times) if reduce == "median" else min(times)


class LayerCost(NamedTuple):
    """What :func:`measure_layer` measured for one layer at one (N, d): FLOPs (counted),
    median wall time in seconds, peak bytes of the tensors the call created
    (:func:`~attention_lib.efficient.memory.peak_memory`), and sequential steps (the critical
    path, :func:`sequential_steps`; None when not asked for)."""
    flops: int
    time_s: float
    peak_bytes: int
    sequential_steps: Optional[int]


def measure_layer(layer: nn.Module, x: Tensor, *, repeats: int = 3,
                  steps: bool = True) -> LayerCost:
    """FLOPs, time, peak memory and (``steps=True``) sequential steps of ``layer(x)``.

    x: (B, N, d_model). Everything runs under ``no_grad`` (inference).
    """
    check_tensor("x", x, ndim=3, layout="(B, N, d_model)")
    with torch.no_grad():
        flops = count_flops(layer, x)
        mem = peak_memory(layer, x).peak_bytes
        seconds = time_call(layer, x, repeats=repeats)
        seq = sequential_steps(layer, x) if steps else None
    return LayerCost(flops, seconds, mem, seq)
