"""LSH (Reformer) and k-means routing (Routing Transformer) attention.

* the dense masks against their definitions written as Python loops over (i, j, round);
* the blocked implementations against ``reference_attention`` with those masks (hypothesis:
  N not a multiple of the chunk, one or several rounds/clusters, causal or not);
* exact limits: one bucket (chunk >= N / 2) and one cluster (window = N) are full attention;
* statistics with fixed seeds: the LSH collision rate follows 1 - theta / pi, and the error
  against full attention falls as the number of rounds / the cluster window grows;
* k-means: the update is pure and equals a loop, and Lloyd steps improve the objective;
* memory: never an (N, N) tensor (``peak_memory``); causal: later values never reach i.
"""
from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_rejected, randn
from hypothesis import given
from hypothesis import strategies as st
from tolerances import DEVICES, FLOAT_DTYPES, assert_close

from attention_lib import MultiHeadAttention, reference_attention
from attention_lib.efficient import clustered as C
from attention_lib.efficient.memory import peak_memory


def _full_shared_qk(qk, v, is_causal=False):
    """Full shared-QK attention with Reformer's self rule, built independently."""
    n = qk.shape[-2]
    mask = ~torch.eye(n, dtype=torch.bool)
    if is_causal:
        mask = mask & torch.ones(n, n, dtype=torch.bool).tril()
        mask[0, 0] = True  # the first position has nothing but itself
    keys = qk / qk.norm(dim=-1, keepdim=True)
    return reference_attention(qk, keys, v, mask.to(qk.device))


# --------------------------------------------------------------------------- LSH masks
def _loop_lsh_mask(buckets, chunk_size, is_causal):
    """buckets: (R, N) -> (N, N) by the definition: sort, chunk, look one chunk back."""
    r, n = buckets.shape
    allowed = [[False] * n for _ in range(n)]
    for rr in range(r):
        b = buckets[rr].tolist()
        order = sorted(range(n), key=lambda i: (b[i], i))
        where = {p: s for s, p in enumerate(order)}
        nc = math.ceil(n / chunk_size) if chunk_size else 1
        for i in range(n):
            for j in range(n):
                if b[i] != b[j]:
                    continue
                if chunk_size:
                    ci, cj = where[i] // chunk_size, where[j] // chunk_size
                    if cj not in (ci, (ci - 1) % nc):
                        continue
                allowed[i][j] = True
    m = torch.tensor(allowed)
    if is_causal:
        m &= torch.ones(n, n, dtype=torch.bool).tril()
    for i in range(n):  # self only when nothing else
        others = m[i].clone()
        others[i] = False
        m[i, i] = not bool(others.any())
    return m


@pytest.mark.parametrize("chunk_size", [None, 3, 5])
@pytest.mark.parametrize("is_causal", [False, True])
def test_lsh_mask_matches_its_definition(chunk_size, is_causal):
    gen = torch.Generator().manual_seed(0)
    buckets = torch.randint(0, 4, (1, 2, 3, 19), generator=gen)
    mask = C.lsh_mask(buckets, chunk_size, is_causal=is_causal)
    assert mask.shape == (1, 2, 19, 19) and mask.dtype == torch.bool
    for h in range(2):
        assert torch.equal(mask[0, h], _loop_lsh_mask(buckets[0, h], chunk_size, is_causal))


def test_lsh_hash_is_angular_and_follows_the_generator():
    gen = torch.Generator().manual_seed(1)
    x = randn(2, 3, 10, 6, gen=gen)
    rot = C.random_rotations(6, 8, n_hashes=4, generator=torch.Generator().manual_seed(5),
                             dtype=torch.float64)
    again = C.random_rotations(6, 8, n_hashes=4, generator=torch.Generator().manual_seed(5),
                               dtype=torch.float64)
    assert rot.shape == (4, 6, 4) and torch.equal(rot, again)
    b = C.lsh_hash(x, rot)
    assert b.shape == (2, 3, 4, 10) and b.dtype == torch.long
    assert int(b.min()) >= 0 and int(b.max()) < 8
    assert torch.equal(C.lsh_hash(x * 7.5, rot), b)  # only the direction matters
    assert torch.equal(C.lsh_hash(-x, rot), (b + 4) % 8)  # antipodes: the opposite bucket
    loop = torch.cat([x @ rot[1], -(x @ rot[1])], -1).argmax(-1)
    assert torch.equal(b[:, :, 1], loop)


def test_collision_rate_follows_the_closed_form():
    """Two buckets: P(same bucket) = 1 - theta / pi, measured over 4000 rotations."""
    gen = torch.Generator().manual_seed(2)
    d, trials = 8, 4000
    rot = C.random_rotations(d, 2, n_hashes=trials, generator=gen, dtype=torch.float64)
    e1, e2 = torch.eye(d, dtype=torch.float64)[:2]
    for theta in (0.3, 1.0, 2.0, 2.8):
        y = math.cos(theta) * e1 + math.sin(theta) * e2
        b = C.lsh_hash(torch.stack([e1, y]).view(1, 1, 2, d), rot)[0, 0]  # (R, 2)
        rate = (b[:, 0] == b[:, 1]).double().mean().item()
        p = C.hyperplane_collision_probability(torch.tensor(theta)).item()
        assert abs(rate - p) < 4 * math.sqrt(p * (1 - p) / trials) + 1e-3, (theta, rate, p)
        any_of_4 = (b[:, 0] == b[:, 1]).view(-1, 4).any(-1).double().mean().item()
        p4 = C.hyperplane_collision_probability(torch.tensor(theta), 4).item()
        assert abs(any_of_4 - p4) < 4 * math.sqrt(p4 * (1 - p4) / (trials / 4)) + 1e-3


# --------------------------------------------------------------------------- LSH attention
@given(n=st.integers(1, 40), n_buckets=st.sampled_from([1, 2, 4, 8]), r=st.integers(1, 3),
       chunk=st.integers(1, 12), d=st.integers(1, 6), is_causal=st.booleans(),
       seed=st.integers(0, 2**16))
def test_lsh_attention_equals_masked_reference(n, n_buckets, r, chunk, d, is_causal, seed):
    gen = torch.Generator().manual_seed(seed)
    qk, v = randn(2, 2, n, d, gen=gen), randn(2, 2, n, 3, gen=gen)
    rot = C.random_rotations(d, n_buckets, n_hashes=r, generator=gen, dtype=torch.float64)
    out = C.lsh_attention(qk, v, rot, chunk_size=chunk, is_causal=is_causal)
    mask = C.lsh_mask(C.lsh_hash(qk, rot), chunk, is_causal=is_causal)
    assert_close(out, reference_attention(qk, C.shared_qk_keys(qk), v, mask))


@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("n,chunk", [(16, 16), (16, 8), (17, 9), (30, 64)])
def test_one_bucket_is_full_shared_qk_attention(n, chunk, is_causal, gen):
    qk, v = randn(2, 3, n, 5, gen=gen), randn(2, 3, n, 4, gen=gen)
    for n_hashes in (1, 3):  # repeated rounds must not count a key twice
        rot = C.random_rotations(5, 1, n_hashes=n_hashes, dtype=torch.float64)
        out = C.lsh_attention(qk, v, rot, chunk_size=chunk, is_causal=is_causal)
        assert_close(out, _full_shared_qk(qk, v, is_causal))


def test_lsh_error_falls_as_rounds_grow():
    """Relative error against full attention, averaged over 3 fixed seeds; the rotations of
    fewer rounds are a prefix of those of more rounds."""
    n, d, seeds, rounds = 64, 16, 3, (1, 2, 4, 8, 16)
    err = dict.fromkeys(rounds, 0.0)
    for seed in range(seeds):
        gen = torch.Generator().manual_seed(seed)
        qk, v = 2 * randn(1, 2, n, d, gen=gen), randn(1, 2, n, d, gen=gen)
        rot = C.random_rotations(d, 8, n_hashes=max(rounds), generator=gen, dtype=torch.float64)
        full = _full_shared_qk(qk, v)
        for r in rounds:
            out = C.lsh_attention(qk, v, rot[:r], chunk_size=n)
            err[r] += ((out - full).norm() / full.norm()).item() / seeds
    errs = [err[r] for r in rounds]
    assert all(b < 0.85 * a for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] < 0.2 * errs[0], errs


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_lsh_on_each_dtype_and_device(device, dtype, gen):
    n, d = 45, 7
    qk, v = randn(2, 2, n, d, gen=gen, dtype=dtype, device=device), randn(
        2, 2, n, 5, gen=gen, dtype=dtype, device=device)
    rot = C.random_rotations(d, 4, n_hashes=2, generator=gen, device=device, dtype=dtype)
    out = C.lsh_attention(qk, v, rot, chunk_size=8, is_causal=True)
    assert out.dtype == dtype and out.device == qk.device
    mask = C.lsh_mask(C.lsh_hash(qk, rot), 8, is_causal=True)
    assert_close(out, reference_attention(qk, C.shared_qk_keys(qk), v, mask))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_within_its_tolerance(dtype, gen):
    qk, v = randn(2, 2, 40, 8, gen=gen, dtype=dtype), randn(2, 2, 40, 8, gen=gen, dtype=dtype)
    rot = C.random_rotations(8, 4, n_hashes=2, generator=gen, dtype=dtype)
    out = C.lsh_attention(qk, v, rot, chunk_size=8, is_causal=True)
    assert out.dtype == dtype
    mask = C.lsh_mask(C.lsh_hash(qk, rot), 8, is_causal=True)
    assert_close(out, reference_attention(qk, C.shared_qk_keys(qk), v, mask))
    mu = C.init_centroids(4, 8, generator=gen, dtype=dtype)
    out = C.routing_attention(qk, qk, v, mu, window=10)
    assert out.dtype == dtype
    idx = C.routing_topk(qk, mu, 10)
    assert_close(out, reference_attention(qk, qk, v, C.routing_mask(idx, idx, 40)))


def test_lsh_gradients_match_the_masked_reference(gen):
    n = 23
    qk, v = randn(1, 2, n, 4, gen=gen), randn(1, 2, n, 3, gen=gen)
    rot = C.random_rotations(4, 4, n_hashes=2, generator=gen, dtype=torch.float64)
    mask = C.lsh_mask(C.lsh_hash(qk, rot), 4, is_causal=True)
    up = randn(1, 2, n, 3, gen=gen)
    grads = []
    for fn in (lambda a, b: C.lsh_attention(a, b, rot, chunk_size=4, is_causal=True),
               lambda a, b: reference_attention(a, C.shared_qk_keys(a), b, mask)):
        a, b = qk.clone().requires_grad_(), v.clone().requires_grad_()
        (fn(a, b) * up).sum().backward()
        grads.append((a.grad, b.grad))
    for g_ours, g_ref in zip(*grads):
        assert_close(g_ours, g_ref)


def test_lsh_causal_never_sees_later_values(gen):
    n, t = 40, 17
    qk, v = randn(1, 2, n, 6, gen=gen), randn(1, 2, n, 4, gen=gen)
    rot = C.random_rotations(6, 4, n_hashes=3, generator=gen, dtype=torch.float64)
    out = C.lsh_attention(qk, v, rot, chunk_size=5, is_causal=True)
    v2 = v.clone()
    v2[..., t + 1:, :] += 10.0
    out2 = C.lsh_attention(qk, v2, rot, chunk_size=5, is_causal=True)
    assert torch.equal(out[..., : t + 1, :], out2[..., : t + 1, :])
    assert not torch.equal(out[..., t + 1:, :], out2[..., t + 1:, :])


def test_lsh_module_is_a_thin_wrapper(gen):
    torch.manual_seed(0)
    m = C.lsh_self_attention(16, 2, n_buckets=4, n_hashes=2, chunk_size=4).double()
    assert m.k_proj is m.q_proj  # shared QK
    x = randn(2, 10, 16, gen=gen)
    rot = C.random_rotations(8, 4, n_hashes=2, generator=gen, dtype=torch.float64)
    m.attn_fn.rotations = rot
    out = m(x, is_causal=True)
    qk = m.q_proj(x).view(2, 10, 2, 8).transpose(1, 2)
    v = m.v_proj(x).view(2, 10, 2, 8).transpose(1, 2)
    manual = C.lsh_attention(qk, v, rot, chunk_size=4, is_causal=True)
    assert_close(out, m.out_proj(manual.transpose(1, 2).reshape(2, 10, 16)))
    m.attn_fn.rotations = None
    m.attn_fn.generator = torch.Generator().manual_seed(3)
    a = m(x)
    m.attn_fn.generator = torch.Generator().manual_seed(3)
    assert torch.equal(a, m(x))


# --------------------------------------------------------------------------- k-means
def test_kmeans_update_is_pure_and_equals_a_loop(gen):
    x = randn(2, 3, 20, 4, gen=gen)
    mu = C.init_centroids(5, 4, generator=gen, dtype=torch.float64)
    before = mu.clone()
    new = C.kmeans_update(mu, x, decay=0.3)
    assert torch.equal(mu, before)  # inputs untouched
    xn = (x / x.norm(dim=-1, keepdim=True)).reshape(-1, 4)
    assign = (xn @ mu.T).argmax(-1)
    for c in range(5):
        members = xn[assign == c]
        if len(members) == 0:
            expect = mu[c]
        else:
            m = members.sum(0)
            expect = 0.3 * mu[c] + 0.7 * m / m.norm()
        assert_close(new[c], expect / expect.norm())
    assert_close(new.norm(dim=-1), torch.ones(5, dtype=torch.float64))


def test_kmeans_steps_improve_the_objective(gen):
    centres = torch.nn.functional.normalize(randn(6, 8, gen=gen), dim=-1)
    x = centres[torch.randint(0, 6, (300,), generator=gen)] + 0.1 * randn(300, 8, gen=gen)
    x = x.view(1, 1, 300, 8)

    def objective(mu):  # mean cosine similarity to the nearest centroid
        return C._similarity(x, mu).amax(-1).mean().item()
    mu = C.init_centroids(6, 8, generator=gen, dtype=torch.float64)
    scores = [objective(mu)]
    for _ in range(5):
        mu = C.kmeans_update(mu, x)
        scores.append(objective(mu))
    assert all(b >= a - 1e-12 for a, b in zip(scores, scores[1:])), scores
    assert scores[-1] > scores[0] + 0.05
    per_head = C.kmeans(x.expand(1, 2, 300, 8), 6, per_head=True, generator=gen)
    assert per_head.shape == (2, 6, 8)
    assert C.route(x, per_head[:1]).shape == (1, 1, 300)


# --------------------------------------------------------------------------- routing
def test_routing_topk_and_mask_match_their_definitions(gen):
    q, k = randn(1, 2, 15, 3, gen=gen), randn(1, 2, 15, 3, gen=gen)
    mu = C.init_centroids(3, 3, num_heads=2, generator=gen, dtype=torch.float64)
    qi, ki = C.routing_topk(q, mu, 4), C.routing_topk(k, mu, 4)
    assert qi.shape == (1, 2, 3, 4)
    for h in range(2):
        cos = torch.nn.functional.cosine_similarity(q[0, h, :, None], mu[h][None], dim=-1)
        for c in range(3):
            expect = sorted(cos[:, c].argsort(descending=True)[:4].tolist())
            assert qi[0, h, c].tolist() == expect
    mask = C.routing_mask(qi, ki, 15, is_causal=True)
    for h in range(2):
        for i in range(15):
            for j in range(15):
                met = any(i in qi[0, h, c].tolist() and j in ki[0, h, c].tolist()
                          for c in range(3))
                assert bool(mask[0, h, i, j]) == (met and j <= i)


@given(n=st.integers(1, 40), c=st.integers(1, 5), frac=st.floats(0.05, 1.0),
       d=st.integers(1, 6), per_head=st.booleans(), is_causal=st.booleans(),
       seed=st.integers(0, 2**16))
def test_routing_attention_equals_masked_reference(n, c, frac, d, per_head, is_causal, seed):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = randn(2, 2, n, d, gen=gen), randn(2, 2, n, d, gen=gen), randn(2, 2, n, 3, gen=gen)
    mu = C.init_centroids(c, d, num_heads=2 if per_head else None, generator=gen,
                          dtype=torch.float64)
    w = max(1, min(n, round(frac * n)))
    out = C.routing_attention(q, k, v, mu, window=w, is_causal=is_causal)
    mask = C.routing_mask(C.routing_topk(q, mu, w), C.routing_topk(k, mu, w), n,
                          is_causal=is_causal)
    assert_close(out, reference_attention(q, k, v, mask))


@pytest.mark.parametrize("is_causal", [False, True])
def test_one_cluster_is_full_attention(is_causal, gen):
    q, k, v = randn(2, 3, 21, 5, gen=gen), randn(2, 3, 21, 5, gen=gen), randn(2, 3, 21, 4, gen=gen)
    mu = C.init_centroids(1, 5, generator=gen, dtype=torch.float64)
    out = C.routing_attention(q, k, v, mu, is_causal=is_causal)  # window = N
    assert_close(out, reference_attention(q, k, v, is_causal=is_causal))
    many = C.init_centroids(4, 5, generator=gen, dtype=torch.float64)
    out = C.routing_attention(q, k, v, many, window=21, is_causal=is_causal)  # all clusters = all
    assert_close(out, reference_attention(q, k, v, is_causal=is_causal))


def test_routing_with_more_clusters_than_one_bitset_word(gen):
    """70 clusters need three 30-bit words; windows overlap, so pairs meet many times."""
    q, k, v = randn(1, 2, 50, 3, gen=gen), randn(1, 2, 50, 3, gen=gen), randn(1, 2, 50, 2, gen=gen)
    mu = C.init_centroids(70, 3, generator=gen, dtype=torch.float64)
    for is_causal in (False, True):
        out = C.routing_attention(q, k, v, mu, window=9, is_causal=is_causal)
        mask = C.routing_mask(C.routing_topk(q, mu, 9), C.routing_topk(k, mu, 9), 50,
                              is_causal=is_causal)
        assert_close(out, reference_attention(q, k, v, mask))


def test_routing_error_falls_as_the_window_grows():
    n, d, seeds, windows = 96, 8, 3, (12, 24, 48, 96)
    err = dict.fromkeys(windows, 0.0)
    for seed in range(seeds):
        gen = torch.Generator().manual_seed(seed)
        q, k, v = (2 * randn(1, 2, n, d, gen=gen) for _ in range(3))
        mu = C.kmeans(torch.cat([q, k], dim=2), 8, generator=gen)
        full = reference_attention(q, k, v)
        for w in windows:
            out = C.routing_attention(q, k, v, mu, window=w)
            err[w] += ((out - full).norm() / full.norm()).item() / seeds
    errs = [err[w] for w in windows]
    assert all(b < 0.8 * a for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] < 1e-10


def test_routing_causal_never_sees_later_values(gen):
    n, t = 30, 11
    q, k, v = (randn(1, 2, n, 4, gen=gen) for _ in range(3))
    mu = C.init_centroids(3, 4, generator=gen, dtype=torch.float64)
    out = C.routing_attention(q, k, v, mu, window=12, is_causal=True)
    v2 = v.clone()
    v2[..., t + 1:, :] -= 5.0
    out2 = C.routing_attention(q, k, v2, mu, window=12, is_causal=True)
    assert torch.equal(out[..., : t + 1, :], out2[..., : t + 1, :])


def test_routing_module_keeps_no_hidden_state(gen):
    routing = C.RoutingCentroids(3, 4, 4, window=5, generator=torch.Generator().manual_seed(0))
    m = MultiHeadAttention(12, 3, attn_fn=routing)
    assert "attn_fn.centroids" in m.state_dict()
    x = torch.randn(2, 10, 12, generator=gen)
    before = routing.centroids.clone()
    out = m(x, is_causal=True)
    assert out.shape == (2, 10, 12) and torch.equal(routing.centroids, before)
    q = m.q_proj(x).view(2, 10, 3, 4).transpose(1, 2)
    k = m.k_proj(x).view(2, 10, 3, 4).transpose(1, 2)
    v = m.v_proj(x).view(2, 10, 3, 4).transpose(1, 2)
    manual = C.routing_attention(q, k, v, before, window=5, is_causal=True)
    assert_close(out, m.out_proj(manual.transpose(1, 2).reshape(2, 10, 12)))
    new = routing.update(q, k, decay=0.5)
    assert torch.equal(routing.centroids, new) and not torch.equal(new, before)


# --------------------------------------------------------------------------- memory
CASES = {
    "lsh": lambda qk, v: C.lsh_attention(
        qk, v, C.random_rotations(qk.shape[-1], 16, n_hashes=2,
                                  generator=torch.Generator().manual_seed(0)), chunk_size=32),
    # a fixed window of 128 keys per cluster, N / 128 clusters: O(N window)
    "routing": lambda qk, v: C.routing_attention(
        qk, qk, v, C.init_centroids(qk.shape[-2] // 128, qk.shape[-1],
                                    generator=torch.Generator().manual_seed(0)), window=128),
}


@pytest.mark.parametrize("name", list(CASES))
def test_blocked_never_allocates_n_by_n(name):
    n, d = 4096, 16
    qk, v = torch.randn(1, 1, n, d), torch.randn(1, 1, n, d)
    stats = peak_memory(CASES[name], qk, v)
    nn_bytes = n * n * 4
    assert stats.largest_bytes < nn_bytes / 16, stats.largest_bytes
    assert stats.peak_bytes < nn_bytes / 2, stats.peak_bytes


@pytest.mark.parametrize("name", list(CASES))
def test_blocked_peak_memory_grows_linearly(name):
    peaks = []
    for n in (512, 2048):
        qk, v = torch.randn(1, 1, n, 8), torch.randn(1, 1, n, 8)
        peaks.append(peak_memory(CASES[name], qk, v).peak_bytes)
    exponent = math.log(peaks[1] / peaks[0]) / math.log(4)
    assert exponent < 1.15, f"peak memory grows like N^{exponent:.2f}: {peaks}"


# --------------------------------------------------------------------------- bad input
def test_bad_input_is_rejected_with_a_clear_message(gen):
    qk, v = randn(1, 2, 8, 4, gen=gen), randn(1, 2, 8, 3, gen=gen)
    rot = C.random_rotations(4, 4, dtype=torch.float64)
    assert_rejected(lambda: C.random_rotations(4, 3), ValueError, "n_buckets", "odd buckets")
    assert_rejected(lambda: C.random_rotations(4, 4, n_hashes=0), ValueError, "n_hashes", "")
    assert_rejected(lambda: C.lsh_hash(qk, C.random_rotations(5, 4)), ValueError,
                    r"rotations.*D = 4", "rotation dim")
    assert_rejected(lambda: C.lsh_attention(qk, v, rot, chunk_size=0), ValueError,
                    "chunk_size", "chunk")
    assert_rejected(lambda: C.lsh_attention(qk, v[..., :5, :], rot), ValueError, "value",
                    "lengths")
    assert_rejected(lambda: C.lsh_attention(qk.long(), v, rot), TypeError, "qk", "dtype")
    assert_rejected(lambda: C.lsh_attention(qk[0], v, rot), ValueError, r"qk must be 4-D",
                    "rank")
    mu = C.init_centroids(3, 4, dtype=torch.float64)
    assert_rejected(lambda: C.routing_attention(qk, qk, v, C.init_centroids(3, 5)), ValueError,
                    "centroids", "centroid dim")
    assert_rejected(lambda: C.routing_attention(qk, qk, v, mu, window=9), ValueError,
                    "window", "window > N")
    assert_rejected(lambda: C.routing_attention(qk, qk[..., :6, :], v[..., :6, :], mu),
                    ValueError, "self-attention", "Nq != Nk")
    assert_rejected(lambda: C.kmeans_update(mu, qk, decay=1.0), ValueError, "decay", "decay")
    assert_rejected(lambda: C.routing_attention(
        qk, qk, v, C.init_centroids(3, 4, num_heads=3, dtype=torch.float64)), ValueError,
        "heads", "centroid heads")
    assert_rejected(lambda: C.lsh_self_attention(10, 3), ValueError, "divisible", "heads")
    assert_rejected(lambda: C.lsh_self_attention(8, 2)(torch.randn(2, 5, 6)), ValueError,
                    "E=8", "embed")
