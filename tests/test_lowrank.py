"""Low rank (``attention_lib.efficient.lowrank``): spectra, the SVD optimum, Linformer.

* the exact limit: with k = N and E = F = the identity (or the k = N pooling projection),
  Linformer equals ``reference_attention``; the module equals ``nn.MultiheadAttention`` with
  copied weights;
* spectra against closed forms (permutation, rank-one, diagonal matrices) and the truncated
  SVD against its defining properties; Eckart-Young as a property: Linformer's implicit
  matrix is never closer to the softmax matrix than the best rank-k one (hypothesis);
* approximation, statistically with fixed seeds: the error falls as k grows (pooling on
  smooth keys, random Gaussian projections averaged over seeds), and the random projections
  preserve norms with relative spread sqrt(2/k) (Johnson-Lindenstrauss);
* key padding: padded keys and values never matter, and equal zeroed rows;
* memory: no (N, N) tensor at N = 4096 (``efficient.memory.peak_memory``);
* bad input, and is_causal=True, fail at the boundary with a message naming the argument.
"""
from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_rejected, rand_mask, randn
from hypothesis import given
from hypothesis import strategies as st
from tolerances import DEVICES, FLOAT_DTYPES, assert_close
from torch import nn

from attention_lib.efficient import lowrank as LR
from attention_lib.efficient.memory import peak_memory
from attention_lib.functional import reference_attention
from attention_lib.layers import MultiHeadAttention


def _qkv(b, h, nq, nk, d, dv, gen, dtype=torch.float64, device="cpu", scale=1.0):
    return (randn(b, h, nq, d, gen=gen, dtype=dtype, device=device) * scale,
            randn(b, h, nk, d, gen=gen, dtype=dtype, device=device) * scale,
            randn(b, h, nk, dv, gen=gen, dtype=dtype, device=device))


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


# --------------------------------------------------------------------------- exact limit
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("per_head", [False, True])
def test_identity_projections_equal_full_attention(device, dtype, per_head):
    gen = torch.Generator().manual_seed(0)
    q, k, v = _qkv(2, 3, 7, 11, 5, 4, gen, dtype, device)
    eye = torch.eye(11, dtype=dtype, device=device)
    E = eye.expand(3, 11, 11).clone() if per_head else eye
    out, w = LR.linformer_attention(q, k, v, E, E.clone(), return_weights=True)
    ref = reference_attention(q, k, v)
    assert_close(out, ref)
    assert w.shape == (2, 3, 7, 11) and out.device.type == torch.device(device).type
    assert_close(LR.linformer_attention(q, k, v, eye, scale=0.3),
                 reference_attention(q, k, v, scale=0.3))


def test_pooling_projection_is_identity_at_k_equal_n_and_averages_segments():
    assert torch.equal(LR.pooling_projection(9, 9), torch.eye(9))
    p = LR.pooling_projection(3, 10, dtype=torch.float64)
    # segments [0, 3), [3, 6), [6, 10): rows average them
    expected = torch.zeros(3, 10, dtype=torch.float64)
    expected[0, :3], expected[1, 3:6], expected[2, 6:] = 1 / 3, 1 / 3, 1 / 4
    assert torch.equal(p, expected)


def test_implicit_weights_reproduce_the_output_and_have_rank_at_most_k():
    gen = torch.Generator().manual_seed(1)
    q, k, v = _qkv(2, 2, 9, 16, 4, 3, gen)
    E = LR.linformer_projection(5, 16, generator=gen, dtype=torch.float64, num_heads=2)
    F = LR.linformer_projection(5, 16, kind="sign", generator=gen, dtype=torch.float64)
    W = LR.linformer_weights(q, k, E, F)  # (B, H, Nq, Nk)
    assert W.shape == (2, 2, 9, 16)
    assert_close(W @ v, LR.linformer_attention(q, k, v, E, F))
    assert (torch.linalg.matrix_rank(W) <= 5).all()


# --------------------------------------------------------------------------- spectra
def test_spectrum_helpers_on_closed_forms():
    n = 20
    perm = torch.eye(n, dtype=torch.float64)[torch.randperm(n, generator=torch.Generator()
                                                            .manual_seed(0))]
    assert_close(LR.attention_spectrum(perm), torch.ones(n, dtype=torch.float64))
    assert LR.energy_rank(perm, 0.9).item() == 18  # ceil(0.9 * 20): all singular values equal
    assert LR.energy_rank(perm, 1.0).item() == n
    assert abs(LR.effective_rank(perm).item() - n) < 1e-9
    uniform = torch.full((n, n), 1.0 / n, dtype=torch.float64)  # flat attention: rank one
    assert_close(LR.attention_spectrum(uniform)[0], torch.tensor(1.0, dtype=torch.float64))
    assert LR.energy_rank(uniform).item() == 1
    assert abs(LR.effective_rank(uniform).item() - 1) < 1e-6
    diag = torch.diag(torch.tensor([3.0, -4.0, 1.0, 0.0], dtype=torch.float64))
    assert_close(LR.attention_spectrum(diag), torch.tensor([4.0, 3.0, 1.0, 0.0],
                                                           dtype=torch.float64))
    # energies 16, 9, 1 of 26: 61.5 %, 96.2 %, 100 %
    assert LR.energy_rank(diag, 0.6).item() == 1 and LR.energy_rank(diag, 0.9).item() == 2
    assert LR.energy_rank(torch.tensor([4.0, 3.0, 1.0]), 0.99, singular_values=True) == 3
    p = torch.tensor([4.0, 3.0, 1.0], dtype=torch.float64) / 8
    assert abs(LR.effective_rank(diag).item() - math.exp(-(p * p.log()).sum().item())) < 1e-9
    assert LR.energy_rank(torch.zeros(3, 3)).item() == 0 and LR.effective_rank(
        torch.zeros(3, 3)).item() == 0
    batch = torch.stack([perm, uniform])  # (2, N, N): batched over leading axes
    assert LR.energy_rank(batch).tolist() == [18, 1]


@given(nq=st.integers(2, 12), nk=st.integers(2, 12), k=st.integers(0, 12),
       seed=st.integers(0, 2**16))
def test_best_rank_k_is_the_truncated_svd(nq, nk, k, seed):
    gen = torch.Generator().manual_seed(seed)
    w = torch.softmax(randn(nq, nk, gen=gen) * 2, -1)
    approx = LR.best_rank_k(w, k)
    r = min(k, nq, nk)
    assert torch.linalg.matrix_rank(approx).item() <= r
    s = torch.linalg.svdvals(w)
    # Eckart-Young: the error of the truncation is the tail of the spectrum
    err = _rel(approx, w)
    assert abs(err - math.sqrt((s[r:] ** 2).sum() / (s ** 2).sum())) < 1e-9
    assert abs(LR.best_rank_k_error(w, k).item() - err) < 1e-9
    if r == min(nq, nk):
        assert_close(approx, w)


@given(nq=st.integers(2, 10), nk=st.integers(2, 14), k=st.integers(1, 14),
       scale=st.sampled_from([0.3, 1.0, 3.0]), kind=st.sampled_from(["gaussian", "sign"]),
       seed=st.integers(0, 2**16))
def test_linformer_is_never_closer_than_the_svd_optimum(nq, nk, k, scale, kind, seed):
    gen = torch.Generator().manual_seed(seed)
    q, key, _ = _qkv(1, 1, nq, nk, 4, 1, gen, scale=scale)
    P = reference_attention(q, key, torch.eye(nk, dtype=torch.float64)[None, None])
    E = LR.linformer_projection(k, nk, kind=kind, generator=gen, dtype=torch.float64)
    F = LR.linformer_projection(k, nk, kind=kind, generator=gen, dtype=torch.float64)
    W = LR.linformer_weights(q, key, E, F)
    assert _rel(W, P) >= LR.best_rank_k_error(P, k).item() - 1e-9


# --------------------------------------------------------------------------- approximation
def test_error_falls_as_k_grows_with_pooling_on_smooth_keys():
    """Keys and values that vary slowly along the sequence (as in real text, where
    neighbours are related): averaging segments loses little, and less as segments shrink."""
    gen = torch.Generator().manual_seed(0)
    n, d = 256, 16
    t = torch.linspace(0, 1, n, dtype=torch.float64)[:, None]  # (N, 1)
    freq = randn(1, d, gen=gen) * 3
    k = torch.sin(2 * math.pi * t * freq + randn(1, d, gen=gen))[None, None]  # (1, 1, N, D)
    v = torch.cos(2 * math.pi * t * freq)[None, None]
    q = randn(1, 1, 64, d, gen=gen) * 2
    ref = reference_attention(q, k, v)
    errors = [_rel(LR.linformer_attention(q, k, v, LR.pooling_projection(kp, n,
                                                                         dtype=torch.float64)),
                   ref) for kp in (8, 16, 32, 64, 256)]
    for coarse, fine in zip(errors, errors[1:]):
        assert fine < 0.7 * coarse, errors
    assert errors[-1] < 1e-12 and errors[0] > 0.01


@pytest.mark.parametrize("kind", ["gaussian", "sign"])
def test_random_projection_error_falls_as_k_grows_on_average(kind):
    gen = torch.Generator().manual_seed(0)
    q, k, v = _qkv(1, 4, 32, 128, 8, 8, gen, dtype=torch.float32)
    ref = reference_attention(q, k, v)
    mean_err = []
    for kp in (4, 16, 64):
        errs = [_rel(LR.linformer_attention(q, k, v, LR.linformer_projection(kp, 128, kind=kind,
                                                                           generator=gen),
                                            LR.linformer_projection(kp, 128, kind=kind,
                                                                 generator=gen)), ref)
                for _ in range(10)]
        mean_err.append(sum(errs) / len(errs))
    # the output of a random projection shrinks like 1/k: the error falls about 2x per 4x k
    assert mean_err[1] < 0.7 * mean_err[0] and mean_err[2] < 0.7 * mean_err[1], mean_err


@pytest.mark.parametrize("kind", ["gaussian", "sign"])
def test_random_projections_preserve_norms_like_johnson_lindenstrauss(kind):
    gen = torch.Generator().manual_seed(0)
    trials, n = 2000, 64
    x = randn(trials, n, 1, gen=gen)  # one vector of length N per trial
    spread = {}
    for kp in (4, 16, 64):
        R = LR.linformer_projection(kp, n, kind=kind, num_heads=trials, generator=gen,
                                 dtype=torch.float64)  # (trials, k, N): a fresh R per trial
        ratio = (R @ x).square().sum((1, 2)) / x.square().sum((1, 2))  # ||R x||^2 / ||x||^2
        assert abs(ratio.mean().item() - 1) < 4 * math.sqrt(2 / kp / trials), kp
        spread[kp] = ratio.std().item()
        assert abs(spread[kp] / math.sqrt(2 / kp) - 1) < 0.25, (kp, spread[kp])
    assert spread[4] > 1.5 * spread[16] > 2.25 * spread[64]


def test_random_projection_is_reproducible_and_device_independent():
    a = LR.linformer_projection(4, 10, generator=torch.Generator().manual_seed(3), num_heads=2)
    b = LR.linformer_projection(4, 10, generator=torch.Generator().manual_seed(3), num_heads=2)
    assert a.shape == (2, 4, 10) and torch.equal(a, b)
    s = LR.linformer_projection(4, 10, kind="sign", generator=torch.Generator().manual_seed(3))
    assert set((s * 2).unique().tolist()) == {-1.0, 1.0}


# --------------------------------------------------------------------------- padding, lengths
def test_key_padding_zeroes_padded_rows_before_the_projection():
    gen = torch.Generator().manual_seed(2)
    q, k, v = _qkv(2, 2, 6, 10, 4, 3, gen)
    keep = torch.ones(2, 1, 1, 10, dtype=torch.bool)
    keep[0, ..., 7:] = False
    keep[1, ..., 4:] = False
    E = LR.linformer_projection(5, 10, generator=gen, dtype=torch.float64)
    F = LR.linformer_projection(5, 10, generator=gen, dtype=torch.float64)
    out = LR.linformer_attention(q, k, v, E, F, keep)
    pad = ~keep.transpose(-2, -1)  # (B, 1, Nk, 1)
    expected = LR.linformer_attention(q, k.masked_fill(pad, 0.0), v.masked_fill(pad, 0.0), E, F)
    assert_close(out, expected)
    junk_k = torch.where(pad, k + 100, k)  # whatever sits in the padding does not matter
    junk_v = torch.where(pad, v * 7, v)
    assert_close(LR.linformer_attention(q, junk_k, junk_v, E, F, keep), out)
    none = torch.zeros(1, 1, 1, 10, dtype=torch.bool)
    assert torch.equal(LR.linformer_attention(q, k, v, E, F, none), torch.zeros_like(out))
    # a (Nk,) mask broadcasts
    assert_close(LR.linformer_attention(q, k, v, E, F, keep[1, 0, 0]),
                 LR.linformer_attention(q, k, v, E, F, keep[1:]))


def test_shorter_sequences_use_the_first_columns_like_zero_padding():
    gen = torch.Generator().manual_seed(3)
    q, k, v = _qkv(1, 2, 5, 7, 4, 3, gen)
    E = LR.linformer_projection(4, 12, generator=gen, dtype=torch.float64)
    pad = torch.zeros(1, 2, 5, 4, dtype=torch.float64)
    padded = LR.linformer_attention(q, torch.cat([k, pad], 2),
                                    torch.cat([v, pad[..., :3]], 2), E)
    assert_close(LR.linformer_attention(q, k, v, E), padded)


def test_half_precision_is_computed_in_float32():
    gen = torch.Generator().manual_seed(4)
    q, k, v = _qkv(1, 2, 8, 16, 8, 8, gen, dtype=torch.bfloat16)
    E = LR.linformer_projection(4, 16, generator=gen, dtype=torch.bfloat16)
    out = LR.linformer_attention(q, k, v, E)
    assert out.dtype == torch.bfloat16
    ref = LR.linformer_attention(q.float(), k.float(), v.float(), E.float())
    assert_close(out, ref)
    assert LR.attention_spectrum(torch.eye(3, dtype=torch.float16)).dtype == torch.float16


# --------------------------------------------------------------------------- memory
def test_linformer_never_allocates_n_by_n():
    n, d, kp = 4096, 16, 64
    q, k, v = (torch.randn(1, 1, n, d) for _ in range(3))
    E, F = (LR.linformer_projection(kp, n, generator=torch.Generator().manual_seed(i))
            for i in range(2))
    stats = peak_memory(LR.linformer_attention, q, k, v, E, F)
    nn_bytes = n * n * 4  # one float32 (N, N) matrix: 64 MiB
    assert stats.largest_bytes <= n * kp * 4, stats.largest_bytes  # the (N, k) weights at most
    assert stats.peak_bytes < nn_bytes / 16, stats.peak_bytes
    full = peak_memory(reference_attention, q, k, v)
    assert full.largest_bytes >= nn_bytes  # the check above could fail


# --------------------------------------------------------------------------- module
def linformer(d_model, num_heads, seq_len, k, **kw):
    """The multi-head Linformer layer: MultiHeadAttention with LinformerProjections."""
    return MultiHeadAttention(d_model, num_heads,
                              attn_fn=LR.LinformerProjections(num_heads, seq_len, k, **kw))


@pytest.mark.parametrize("sharing", LR.LINFORMER_SHARING)
def test_module_matches_the_functional_core(sharing):
    gen = torch.Generator().manual_seed(5)
    mod = linformer(16, 4, 20, 6, sharing=sharing, generator=gen).double()
    x = randn(3, 20, 16, gen=gen)
    keep = rand_mask((3, 1, 1, 20), gen, p=0.7)
    out, w = mod(x, attn_mask=keep, return_weights=True)
    split = lambda t: t.view(3, 20, 4, 4).transpose(1, 2)  # (B, H, N, Dh)
    ref = LR.linformer_attention(split(mod.q_proj(x)), split(mod.k_proj(x)),
                                 split(mod.v_proj(x)), mod.attn_fn.E, mod.attn_fn.F, keep)
    assert_close(out, mod.out_proj(ref.transpose(1, 2).reshape(3, 20, 16)))
    assert w.shape == (3, 4, 20, 6)
    proj_params = {"none": 2 * 4 * 6 * 20, "headwise": 2 * 6 * 20, "key-value": 6 * 20,
                   "layerwise": 6 * 20}[sharing]
    assert sum(p.numel() for p in mod.parameters()) == 4 * (16 * 16 + 16) + proj_params


def test_layerwise_sharing_uses_one_parameter_for_every_layer():
    first = linformer(8, 2, 10, 3, sharing="layerwise")
    second = linformer(8, 2, 10, 3, sharing="layerwise", projection=first.attn_fn.E)
    stack = nn.ModuleList([first, second])
    assert second.attn_fn.E is first.attn_fn.E and second.attn_fn.F is None
    assert sum(p.numel() for p in stack.parameters()) == 2 * 4 * (8 * 8 + 8) + 3 * 10
    x = torch.randn(2, 10, 8)
    second(first(x)).sum().backward()
    assert first.attn_fn.E.grad is not None and first.attn_fn.E.grad.abs().sum() > 0


def test_module_at_k_equal_n_with_identity_projections_equals_torch_multihead():
    gen = torch.Generator().manual_seed(6)
    e, h, n = 12, 3, 9
    ref = nn.MultiheadAttention(e, h, batch_first=True, dtype=torch.float64)
    mod = linformer(e, h, n, n, sharing="headwise", init="pooling").double()
    assert torch.equal(mod.attn_fn.E, torch.eye(n, dtype=torch.float64))
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(randn(*p.shape, gen=gen) * 0.3)
        wq, wk, wv = ref.in_proj_weight.split(e)
        bq, bk, bv = ref.in_proj_bias.split(e)
        for lin, w, b in ((mod.q_proj, wq, bq), (mod.k_proj, wk, bk), (mod.v_proj, wv, bv),
                          (mod.out_proj, ref.out_proj.weight, ref.out_proj.bias)):
            lin.weight.copy_(w)
            lin.bias.copy_(b)
    x = randn(2, n, e, gen=gen)
    assert_close(mod(x), ref(x, x, x, need_weights=False)[0])


# --------------------------------------------------------------------------- bad input
def test_causal_is_rejected_with_the_reason():
    q = k = v = torch.randn(1, 1, 4, 2)
    E = torch.eye(4)
    assert_rejected(lambda: LR.linformer_attention(q, k, v, E, is_causal=True), ValueError,
                    "cannot be causal.*every position")
    mod = linformer(4, 1, 4, 2)
    assert_rejected(lambda: mod(torch.randn(1, 4, 4), is_causal=True), ValueError,
                    "cannot be causal")


def test_bad_inputs_name_the_argument():
    q = k = v = torch.randn(2, 2, 6, 4)
    E = torch.randn(3, 6)
    cases = {
        "E rank": (lambda: LR.linformer_attention(q, k, v, torch.randn(6)), ValueError,
                   r"E must be 2-D or 3-D"),
        "E too short": (lambda: LR.linformer_attention(q, k, v, torch.randn(3, 5)), ValueError,
                        r"E \(3, 5\) projects sequences of at most 5.*Nk=6"),
        "k mismatch": (lambda: LR.linformer_attention(q, k, v, E, torch.randn(4, 6)),
                       ValueError, r"same k.*E \(3, 6\) vs F \(4, 6\)"),
        "heads": (lambda: LR.linformer_attention(q, k, v, torch.randn(3, 3, 6)), ValueError,
                  r"E \(3, 3, 6\) has 3 heads.*H=2"),
        "dtype": (lambda: LR.linformer_attention(q, k, v, E.double()), TypeError,
                  r"E must have the dtype of key"),
        "not a tensor": (lambda: LR.linformer_attention(q, k, v, [[1.0]]), TypeError,
                         r"E must be a torch.Tensor"),
        "mask dtype": (lambda: LR.linformer_attention(q, k, v, E, None, torch.ones(6)),
                       TypeError, r"attn_mask must have dtype torch.bool"),
        "mask shape": (lambda: LR.linformer_attention(
            q, k, v, E, None, torch.ones(2, 1, 6, 6, dtype=torch.bool)), ValueError,
            r"attn_mask must hide whole keys, shape \(B, H, 1, Nk\) = .* got \(2, 1, 6, 6\)"),
        "query rank": (lambda: LR.linformer_attention(q[0], k, v, E), ValueError,
                       r"query must be 4-D"),
        "scale": (lambda: LR.linformer_attention(q, k, v, E, scale="1"), TypeError, "scale"),
        "kind": (lambda: LR.linformer_projection(3, 6, kind="normal"), ValueError, "kind"),
        "k int": (lambda: LR.linformer_projection(0, 6), ValueError, "k must be an int >= 1"),
        "pool k": (lambda: LR.pooling_projection(7, 6), ValueError, "k <= seq_len"),
        "energy": (lambda: LR.energy_rank(torch.eye(3), 1.5), ValueError, "energy"),
        "weights": (lambda: LR.attention_spectrum(torch.ones(3)), ValueError,
                    r"weights must have at least 2 dims"),
        "sharing": (lambda: linformer(8, 2, 6, 3, sharing="all"), ValueError,
                    "sharing must be one of"),
        "projection": (lambda: linformer(8, 2, 6, 3, projection=nn.Parameter(E)),
                       ValueError, "sharing='layerwise'"),
        "too long": (lambda: linformer(8, 2, 6, 3)(torch.randn(1, 7, 8)),
                     ValueError, r"7 positions.*seq_len=6"),
        "d_model": (lambda: linformer(8, 2, 6, 3)(torch.randn(1, 6, 5)),
                    ValueError, r"query must have last dim E=8"),
    }
    for case, (call, exc, pattern) in cases.items():
        assert_rejected(call, exc, pattern, case)
