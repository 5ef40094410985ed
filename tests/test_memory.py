"""``attention_lib.efficient.memory.peak_memory`` against allocations whose sizes we know."""
from __future__ import annotations

import torch

from attention_lib.efficient.memory import peak_memory

MB = 2**20


def test_counts_what_the_call_creates_not_its_inputs():
    x = torch.ones(MB // 4)  # 1 MiB input: not counted
    stats = peak_memory(lambda t: t * 2, x)
    assert stats.peak_bytes == MB and stats.largest_bytes == MB  # the 1 MiB output
    assert torch.equal(stats.result, x * 2)


def test_freed_temporaries_do_not_add_up():
    def chain(t):
        for _ in range(5):
            t = t + 1  # each step frees the previous temporary
        return t
    stats = peak_memory(chain, torch.zeros(MB // 4))
    assert stats.peak_bytes == 2 * MB  # at most two 1 MiB tensors alive at once
    assert stats.largest_bytes == MB


def test_live_temporaries_add_up_and_views_are_free():
    def keep_all(t):
        a, b, c = t + 1, t + 2, t + 3  # three live 1 MiB tensors
        views = [a[::2], b.view(-1, 2), c[1:]]  # views allocate no new storage
        assert all(v.untyped_storage().data_ptr() in {a.untyped_storage().data_ptr(),
                   b.untyped_storage().data_ptr(), c.untyped_storage().data_ptr()}
                   for v in views)
        return a + b  # a, b, c and the sum alive together
    stats = peak_memory(keep_all, torch.zeros(MB // 4))
    assert stats.peak_bytes == 4 * MB
    assert stats.largest_bytes == MB


def test_sees_the_n_by_n_matrix_of_a_matmul():
    n = 512
    q = torch.randn(n, 8)
    stats = peak_memory(lambda a: (a @ a.T).softmax(-1).sum(), q)
    assert stats.largest_bytes == n * n * 4
