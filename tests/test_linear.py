"""Linear attention (``attention_lib.efficient.linear``) against independent references.

* values: against a float64 dense computation of the normalised kernel attention
  ``A_ij = phi(q_i) . phi(k_j) / sum_l phi(q_i) . phi(k_l)`` built with explicit loops / einsum
  -- for the identity map on non-negative inputs that is attention with weights
  proportional to ``q . k``;
* the recurrent form (and the fast-weight-programmer loop) equals the parallel causal form,
  including continuing from a returned state;
* causal: no output depends on a later key or value (values and gradients);
* memory: no (N, N) tensor at N = 8192 (``efficient.memory.peak_memory``);
* the outer-product memory: sum and delta rules against their defining properties;
* bad input fails at the boundary with a message naming the argument.
"""
from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_rejected, rand_mask, randn
from hypothesis import given
from hypothesis import strategies as st
from tolerances import DEVICES, FLOAT_DTYPES, assert_close

from attention_lib import masks as M
from attention_lib.efficient import linear as L
from attention_lib.efficient.memory import peak_memory


def dense_kernel_attention(phi_q, phi_k, v, keep=None, causal=False):
    """float64, one (i, j) pair at a time: sum_j s_ij v_j / sum_j s_ij over visible keys."""
    phi_q, phi_k, v = phi_q.double(), phi_k.double(), v.double()
    b, h, nq, _ = phi_q.shape
    nk = phi_k.shape[-2]
    out = torch.zeros(b, h, nq, v.shape[-1], dtype=torch.float64)
    for bi in range(b):
        for hi in range(h):
            for i in range(nq):
                num = torch.zeros(v.shape[-1], dtype=torch.float64)
                den = torch.zeros((), dtype=torch.float64)
                for j in range(nk):
                    if causal and j > i:
                        continue
                    if keep is not None and not keep[bi if keep.shape[0] > 1 else 0, 0, 0, j]:
                        continue
                    s = phi_q[bi, hi, i] @ phi_k[bi, hi, j]
                    num += s * v[bi, hi, j]
                    den += s
                out[bi, hi, i] = num / den if den != 0 else 0.0
    return out


def elu1(x):
    return F.elu(x) + 1


# --------------------------------------------------------------------------- values
@given(b=st.integers(1, 2), h=st.integers(1, 2), nq=st.integers(1, 12), nk=st.integers(1, 12),
       d=st.integers(1, 5), dv=st.integers(1, 4), chunk=st.integers(1, 16),
       is_causal=st.booleans(), masked=st.booleans(), seed=st.integers(0, 2**16))
def test_identity_map_on_nonnegative_inputs_is_dot_product_kernel_attention(
        b, h, nq, nk, d, dv, chunk, is_causal, masked, seed):
    gen = torch.Generator().manual_seed(seed)
    if is_causal:
        nk = nq
    q = randn(b, h, nq, d, gen=gen).abs() + 0.01  # non-negative: the normaliser is > 0
    k = randn(b, h, nk, d, gen=gen).abs() + 0.01
    v = randn(b, h, nk, dv, gen=gen)
    keep = rand_mask((b, 1, 1, nk), gen, p=0.6) if masked else None
    out = L.linear_attention(q, k, v, keep, is_causal=is_causal, feature_map="identity",
                             eps=0.0, chunk_size=chunk)
    # weights proportional to q . k, by einsum rather than loops (fast), then by loops
    s = torch.einsum("bhid,bhjd->bhij", q, k)
    if keep is not None:
        s = s * keep
    if is_causal:
        s = s * torch.ones(nq, nk, dtype=torch.bool).tril()
    den = s.sum(-1, keepdim=True)
    expected = torch.where(den > 0, s / torch.where(den > 0, den, 1), 0) @ v
    assert_close(out, expected)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("feature_map", ["elu", "relu", "identity", "callable"])
@pytest.mark.parametrize("is_causal", [False, True])
def test_matches_float64_loops(device, dtype, feature_map, is_causal, gen):
    b, h, n, d, dv = 2, 2, 11, 4, 3
    q, k, v = (randn(b, h, n, x, gen=gen, dtype=dtype, device=device) for x in (d, d, dv))
    keep = rand_mask((b, 1, 1, n), gen, p=0.7, device=device)
    fm = {"elu": elu1, "relu": F.relu, "identity": lambda x: x.abs(),
          "callable": lambda x: torch.cat([F.relu(x), F.relu(-x), x * x], -1)}[feature_map]
    name = feature_map if feature_map in ("elu", "relu") else fm
    if feature_map == "identity":  # identity on non-negative inputs
        q, k, name = q.abs(), k.abs(), "identity"
    out = L.linear_attention(q, k, v, keep, is_causal=is_causal, feature_map=name, eps=0.0,
                             chunk_size=4)
    expected = dense_kernel_attention(fm(q).cpu(), fm(k).cpu(), v.cpu(), keep.cpu(), is_causal)
    assert_close(out, expected.to(device))


def test_weights_helper_reproduces_the_output(gen):
    q, k, v = randn(2, 3, 9, 4, gen=gen), randn(2, 3, 9, 4, gen=gen), randn(2, 3, 9, 5, gen=gen)
    for causal in (False, True):
        w = L.linear_attention_weights(q, k, is_causal=causal)
        assert_close(w.sum(-1), torch.ones(2, 3, 9, dtype=torch.float64))
        assert (w >= 0).all()
        assert_close(L.linear_attention(q, k, v, is_causal=causal, eps=0.0), w @ v)


def test_eps_is_added_to_the_normaliser(gen):
    q, k, v = randn(1, 1, 5, 3, gen=gen), randn(1, 1, 5, 3, gen=gen), randn(1, 1, 5, 2, gen=gen)
    phi_q, phi_k = elu1(q), elu1(k)
    num = phi_q @ (phi_k.mT @ v)
    den = phi_q @ phi_k.sum(-2).unsqueeze(-1)
    assert_close(L.linear_attention(q, k, v, eps=0.5), num / (den + 0.5))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_is_computed_in_float32(dtype, gen):
    q, k, v = (randn(2, 2, 40, 8, gen=gen, dtype=torch.float32) for _ in range(3))
    for causal in (False, True):
        out = L.linear_attention(q.to(dtype), k.to(dtype), v.to(dtype), is_causal=causal)
        assert out.dtype == dtype
        ref = L.linear_attention(q.to(dtype).float(), k.to(dtype).float(), v.to(dtype).float(),
                                 is_causal=causal)
        assert_close(out, ref.to(dtype))


def test_fully_masked_and_zero_feature_rows_are_zero_not_nan(gen):
    q, k, v = randn(2, 1, 6, 3, gen=gen), randn(2, 1, 6, 3, gen=gen), randn(2, 1, 6, 2, gen=gen)
    keep = torch.ones(2, 1, 1, 6, dtype=torch.bool)
    keep[1] = False  # second example: no real key at all
    for causal in (False, True):
        out = L.linear_attention(q, k, v, keep, is_causal=causal, eps=0.0)
        assert not out.isnan().any() and (out[1] == 0).all()
    # relu features of an all-negative query are all zero: nothing attended, zeros
    q_neg = -q.abs() - 0.1
    out = L.linear_attention(q_neg, k, v, feature_map="relu", eps=0.0)
    assert not out.isnan().any() and (out == 0).all()


def test_padding_is_ignored(gen):
    """A padded batch gives, on its real positions, what each sequence gives alone."""
    lengths = torch.tensor([7, 4])
    q, k, v = randn(2, 2, 7, 4, gen=gen), randn(2, 2, 7, 4, gen=gen), randn(2, 2, 7, 3, gen=gen)
    keep = M.key_mask(lengths, 7)  # (B, 1, 1, Nk)
    for causal in (False, True):
        out = L.linear_attention(q, k, v, keep, is_causal=causal)
        alone = L.linear_attention(q[1:, :, :4], k[1:, :, :4], v[1:, :, :4], is_causal=causal)
        assert_close(out[1:, :, :4], alone)


def test_broadcast_batch_and_head_axes(gen):
    q, k, v = randn(2, 3, 6, 4, gen=gen), randn(1, 3, 6, 4, gen=gen), randn(2, 1, 6, 3, gen=gen)
    for causal in (False, True):
        out = L.linear_attention(q, k, v, is_causal=causal)
        full = L.linear_attention(q, k.expand(2, 3, 6, 4), v.expand(2, 3, 6, 3), is_causal=causal)
        assert out.shape == (2, 3, 6, 3)
        assert_close(out, full)


# --------------------------------------------------------------------------- recurrent form
@given(n=st.integers(1, 40), chunk=st.integers(1, 50), d=st.integers(1, 6),
       masked=st.booleans(), split=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_recurrent_equals_parallel(n, chunk, d, masked, split, seed):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = randn(2, 2, n, d, gen=gen), randn(2, 2, n, d, gen=gen), randn(2, 2, n, 3, gen=gen)
    keep = rand_mask((2, 1, 1, n), gen, p=0.6, keep_first=False) if masked else None
    par, st_par = L.linear_attention(q, k, v, keep, is_causal=True, chunk_size=chunk,
                                     return_state=True)
    rec, st_rec = L.linear_attention_recurrent(q, k, v, keep, return_state=True)
    assert_close(rec, par)
    assert_close(st_rec.kv, st_par.kv)
    assert_close(st_rec.k_sum, st_par.k_sum)
    # a prompt in parallel, then the rest one step at a time from the returned state
    t = int(split * n)
    if 0 < t < n:
        first, state = L.linear_attention(q[..., :t, :], k[..., :t, :], v[..., :t, :],
                                          None if keep is None else keep[..., :t],
                                          is_causal=True, chunk_size=chunk, return_state=True)
        rest = L.linear_attention_recurrent(q[..., t:, :], k[..., t:, :], v[..., t:, :],
                                            None if keep is None else keep[..., t:],
                                            state=state)
        assert_close(torch.cat([first, rest], dim=-2), par)


@pytest.mark.parametrize("device", DEVICES)
def test_final_state_is_the_sum_of_outer_products(device, gen):
    q, k, v = (randn(2, 3, 13, 4, gen=gen, device=device) for _ in range(3))
    for causal in (False, True):
        _, state = L.linear_attention(q, k, v, is_causal=causal, return_state=True, chunk_size=5)
        phi_k = elu1(k)
        assert_close(state.kv, torch.einsum("bhnf,bhnd->bhfd", phi_k, v))
        assert_close(state.k_sum, phi_k.sum(-2))
        assert state.kv.shape == (2, 3, 4, 4) and state.k_sum.shape == (2, 3, 4)


def test_state_size_does_not_grow(gen):
    q, k, v = (randn(1, 2, 1, 4, gen=gen) for _ in range(3))
    state, sizes = None, set()
    for _ in range(20):
        _, state = L.kernel_attention_step(elu1(q[:, :, 0]), elu1(k[:, :, 0]), v[:, :, 0], state)
        sizes.add(state.kv.numel() + state.k_sum.numel())
    assert sizes == {2 * 4 * 4 + 2 * 4}


# --------------------------------------------------------------------------- causality
@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_causal_has_no_leakage(chunk, gen):
    n, t = 20, 8
    q, k, v = randn(1, 2, n, 4, gen=gen), randn(1, 2, n, 4, gen=gen), randn(1, 2, n, 3, gen=gen)
    out = L.linear_attention(q, k, v, is_causal=True, chunk_size=chunk)
    k2, v2 = k.clone(), v.clone()
    k2[..., t + 1:, :] = randn(1, 2, n - t - 1, 4, gen=gen) * 10
    v2[..., t + 1:, :] = randn(1, 2, n - t - 1, 3, gen=gen) * 10
    out2 = L.linear_attention(q, k2, v2, is_causal=True, chunk_size=chunk)
    assert_close(out2[..., : t + 1, :], out[..., : t + 1, :])
    assert not torch.allclose(out2[..., t + 1:, :], out[..., t + 1:, :])
    # gradients: output t depends on no later key or value
    k3, v3 = k.clone().requires_grad_(), v.clone().requires_grad_()
    L.linear_attention(q, k3, v3, is_causal=True, chunk_size=chunk)[..., t, :].sum().backward()
    assert (k3.grad[..., t + 1:, :] == 0).all() and (v3.grad[..., t + 1:, :] == 0).all()
    assert (k3.grad[..., : t + 1, :] != 0).any()


def test_gradcheck():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (randn(1, 2, 7, 3, gen=gen).requires_grad_() for _ in range(3))
    for causal in (False, True):
        assert torch.autograd.gradcheck(
            lambda a, b_, c, causal=causal: L.linear_attention(a, b_, c, is_causal=causal,
                                                               chunk_size=3),
            (q, k, v))


# --------------------------------------------------------------------------- memory
@pytest.mark.parametrize("is_causal", [False, True])
def test_never_builds_n_by_n(is_causal):
    n, d = 8192, 64
    gen = torch.Generator().manual_seed(0)
    q, k, v = (randn(1, 1, n, d, gen=gen, dtype=torch.float32) for _ in range(3))
    stats = peak_memory(L.linear_attention, q, k, v, is_causal=is_causal)
    n2 = n * n * 4  # one float32 (N, N) matrix: 256 MiB
    assert stats.largest_bytes < n2 / 100, stats
    assert stats.peak_bytes < n2 / 10, stats
    if is_causal:  # the first outputs see only the first keys
        head = L.linear_attention(q[..., :100, :], k[..., :100, :], v[..., :100, :],
                                  is_causal=True)
        torch.testing.assert_close(stats.result[..., :100, :], head, rtol=1e-4, atol=1e-5)


def test_chunks_bound_the_causal_memory():
    """The plain cumulative sum (chunk 1) holds N states of F x Dv; chunks of 64 hold N / 64."""
    n, d = 2048, 32
    gen = torch.Generator().manual_seed(0)
    q, k, v = (randn(1, 1, n, d, gen=gen, dtype=torch.float32) for _ in range(3))
    cumsum = peak_memory(L.linear_attention, q, k, v, is_causal=True, chunk_size=1)
    chunked = peak_memory(L.linear_attention, q, k, v, is_causal=True, chunk_size=64)
    assert cumsum.largest_bytes >= n * d * (d + 1) * 4  # the (N, F, Dv + 1) prefix sums
    assert chunked.largest_bytes <= n * d * (d + 1) * 4 / 16
    assert_close(chunked.result, cumsum.result)


# --------------------------------------------------------------------------- fast weights
def test_fast_weight_programmer_is_causal_linear_attention(gen):
    q, k, v = randn(2, 2, 15, 4, gen=gen), randn(2, 2, 15, 4, gen=gen), randn(2, 2, 15, 3, gen=gen)
    fwp, w = L.fast_weight_programmer(q, k, v, return_memory=True)
    assert_close(fwp, L.linear_attention(q, k, v, is_causal=True))
    assert_close(w, torch.einsum("bhnd,bhnf->bhdf", v, elu1(k)))  # W = sum_t v_t phi(k_t)^T
    # unnormalised: the numerator only, tril(phi(Q) phi(K)^T) V
    raw = L.fast_weight_programmer(q, k, v, normalize=False)
    assert_close(raw, (elu1(q) @ elu1(k).mT).tril() @ v)


def test_sum_rule_memory_is_v_transpose_k(gen):
    keys, values = randn(3, 10, 6, gen=gen), randn(3, 10, 4, gen=gen)
    w = L.write_memory(keys, values)
    assert w.shape == (3, 4, 6)
    assert_close(w, torch.einsum("bnv,bnk->bvk", values, keys))
    assert_close(L.read_memory(w, keys), keys @ keys.mT @ values)


@pytest.mark.parametrize("rule", ["sum", "delta"])
def test_orthonormal_keys_are_retrieved_exactly(rule, gen):
    d, n = 8, 8
    keys = torch.linalg.qr(randn(d, d, gen=gen))[0][:n]  # orthonormal rows
    values = randn(n, 5, gen=gen)
    w = L.write_memory(keys, values, rule=rule)
    assert_close(L.read_memory(w, keys), values)


def test_delta_rule_overwrites_where_the_sum_rule_adds(gen):
    k = torch.nn.functional.normalize(randn(1, 6, gen=gen), dim=-1)  # one unit key
    v_old, v_new = randn(1, 3, gen=gen), randn(1, 3, gen=gen)
    keys, values = torch.cat([k, k]), torch.cat([v_old, v_new])
    assert_close(L.read_memory(L.write_memory(keys, values, rule="delta"), k), v_new)
    assert_close(L.read_memory(L.write_memory(keys, values, rule="sum"), k), v_old + v_new)
    half = L.write_memory(keys[:1], values[:1], rule="delta", beta=0.5)
    assert_close(L.read_memory(half, k), 0.5 * v_old)


def test_delta_rule_programmer_matches_write_memory(gen):
    q, k, v = randn(1, 2, 9, 4, gen=gen), randn(1, 2, 9, 4, gen=gen), randn(1, 2, 9, 3, gen=gen)
    beta = torch.rand(1, 2, 9, generator=gen, dtype=torch.float64)
    out, w = L.fast_weight_programmer(q, k, v, rule="delta", beta=beta, normalize=False,
                                      feature_map="identity", return_memory=True)
    assert_close(w, L.write_memory(k, v, rule="delta", beta=beta))
    for t in (0, 4, 8):  # y_t reads the memory after the first t + 1 writes
        w_t = L.write_memory(k[..., : t + 1, :], v[..., : t + 1, :], rule="delta",
                             beta=beta[..., : t + 1])
        assert_close(out[..., t, :], L.read_memory(w_t, q[..., t:t + 1, :])[..., 0, :])


# --------------------------------------------------------------------------- module
def test_module_equals_functional_and_masks(gen):
    torch.manual_seed(0)
    from attention_lib.layers import MultiHeadAttention, merge_heads, split_heads
    mod = MultiHeadAttention(12, 3, attn_fn=partial(L.linear_attention, feature_map="elu"))
    mod = mod.double()
    x = randn(2, 7, 12, gen=gen)
    keep = M.key_mask(torch.tensor([7, 5]), 7)
    q, k, v = (split_heads(p(x), 3) for p in (mod.q_proj, mod.k_proj, mod.v_proj))
    for causal in (False, True):
        expected = mod.out_proj(merge_heads(L.linear_attention(q, k, v, keep, is_causal=causal)))
        assert_close(mod(x, attn_mask=keep, is_causal=causal), expected)


# --------------------------------------------------------------------------- bad input
def f(*shape, dtype=torch.float32):
    return torch.zeros(*shape, dtype=dtype)


Q, K, V = f(2, 3, 4, 8), f(2, 3, 6, 8), f(2, 3, 6, 5)


def b(*shape):
    return torch.ones(*shape, dtype=torch.bool)


CASES = {
    "query 3-D": (lambda: L.linear_attention(f(2, 4, 8), K, V), ValueError,
                  r"query must be 4-D .*\(2, 4, 8\)"),
    "head dims differ": (lambda: L.linear_attention(Q, f(2, 3, 6, 7), V), ValueError,
                         r"query and key must have the same head dim.*\(2, 3, 6, 7\)"),
    "key/value lengths": (lambda: L.linear_attention(Q, K, f(2, 3, 5, 5)), ValueError,
                          r"key and value must have the same number of positions.*\(2, 3, 5, 5\)"),
    "dtypes differ": (lambda: L.linear_attention(Q, K, f(2, 3, 6, 5, dtype=torch.float64)),
                      TypeError, r"must share a dtype"),
    "integer input": (lambda: L.linear_attention(Q.long(), K, V), TypeError,
                      r"query must be a floating-point tensor"),
    "not a tensor": (lambda: L.linear_attention([1.0], K, V), TypeError,
                     r"query must be a torch.Tensor"),
    "float mask": (lambda: L.linear_attention(Q, K, V, f(2, 1, 1, 6)), TypeError,
                   r"attn_mask must have dtype torch.bool"),
    "mask per query": (lambda: L.linear_attention(Q, K, V, b(2, 1, 4, 6)),
                       ValueError, r"attn_mask must hide whole keys, shape \(B, H, 1, Nk\) = "
                                   r"\(2, 3, 1, 6\) or broadcastable, got \(2, 1, 4, 6\).*"
                                   r"use is_causal=True for the causal mask, or an exact family"),
    "mask wrong length": (lambda: L.linear_attention(Q, K, V, b(2, 1, 1, 5)),
                          ValueError, r"attn_mask with shape \(2, 1, 1, 5\) does not broadcast"),
    "causal Nq != Nk": (lambda: L.linear_attention(Q, K, V, is_causal=True), ValueError,
                        r"is_causal needs as many queries as keys.*\(2, 3, 4, 8\).*\(2, 3, 6, 8\)"),
    "unknown feature map": (lambda: L.linear_attention(Q, K, V, feature_map="softmax"),
                            ValueError, r"feature_map must be one of .*'softmax'"),
    "feature map changes N": (
        lambda: L.linear_attention(Q, K, V, feature_map=lambda x: x[..., :2, :]),
        ValueError, r"feature_map must map query \(2, 3, 4, 8\)"),
    "chunk_size 0": (lambda: L.linear_attention(Q, K, V, chunk_size=0), ValueError,
                     r"chunk_size must be an int >= 1, got 0"),
    "negative eps": (lambda: L.linear_attention(Q, K, V, eps=-1.0), ValueError,
                     r"eps must be a float >= 0"),
    "empty sequence": (lambda: L.linear_attention(f(2, 3, 0, 8), K, V), ValueError,
                       r"empty sequence"),
    "memory rule": (lambda: L.write_memory(f(4, 3), f(4, 2), rule="hebb"), ValueError,
                    r"rule must be 'sum' or 'delta', got 'hebb'"),
    "memory lengths": (lambda: L.write_memory(f(4, 3), f(5, 2)), ValueError,
                       r"keys .* and values .* same N: keys \(4, 3\) vs values \(5, 2\)"),
    "memory shape": (lambda: L.write_memory(f(4, 3), f(4, 2), memory=f(3, 2)), ValueError,
                     r"memory must be \(\.\.\., Dv, Dk\) = \(\.\.\., 2, 3\), got \(3, 2\)"),
    "read dims": (lambda: L.read_memory(f(2, 3), f(5, 4)), ValueError,
                  r"must share Dk: memory \(2, 3\) vs queries \(5, 4\)"),
    "step rank": (lambda: L.kernel_attention_step(f(2, 3, 1, 4), f(2, 3, 4), f(2, 3, 4)),
                  ValueError, r"phi_q must be 3-D \(B, H, F\)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_rejected_with_a_clear_message(case):
    assert_rejected(*CASES[case], case=case)
