"""Buggy versions of the exercises of exercises/12_learned_sparsity.ipynb, written the way a
student would (independently of the variants in attention_course.checks.chapters.ch12_*).
tests/test_checks.py checks that each one fails and gets the hint of its mistake."""
import torch


def _projections(x, rotations):
    # one round at a time: (B, H, N, D) @ (D, b/2) -> (B, H, N, b/2), stacked on axis 2
    return torch.stack([x @ rotations[r] for r in range(rotations.shape[0])], dim=2)


def _buckets(x, rotations, how):
    p = _projections(x, rotations)  # (B, H, R, N, b/2)
    if how == "positive only":
        return torch.argmax(p, dim=-1)
    if how == "minus first":
        return torch.argmax(torch.cat((p.neg(), p), dim=-1), dim=-1)
    return torch.argmax(torch.abs(p), dim=-1)


def _route(x, centroids, how):
    c = centroids if centroids.dim() == 2 else centroids.unsqueeze(0)
    if how == "one set":
        c = centroids.reshape(-1, centroids.shape[-2], centroids.shape[-1])[0]
    if how == "dot":
        return torch.argmax(torch.matmul(x, c.transpose(-1, -2)), dim=-1)
    if how == "distance":
        d2 = ((x.unsqueeze(-2) - c.unsqueeze(-3)) ** 2).sum(-1)  # (B, H, N, C)
        return torch.argmin(d2, dim=-1)
    cos = torch.nn.functional.cosine_similarity(x.unsqueeze(-2), c.unsqueeze(-3), dim=-1)
    return torch.argmin(cos, dim=-1) if how == "min" else torch.argmax(cos, dim=-1)


def _sinkhorn(la, n_iters, how):
    if how == "linear":
        m = torch.exp(la)
        for _ in range(n_iters):
            m = m / m.sum(dim=-1, keepdim=True)
            m = m / m.sum(dim=-2, keepdim=True)
        return torch.log(m)
    if how == "rows":
        out = la
        for _ in range(n_iters):
            out = out - torch.logsumexp(out, -1, keepdim=True)
        return out
    out = la
    for _ in range(n_iters):
        if how == "cols first":
            out = out - torch.logsumexp(out, -2, keepdim=True)
            out = out - torch.logsumexp(out, -1, keepdim=True)
        else:
            out = out - torch.logsumexp(out, -1, keepdim=True)
            out = out - torch.logsumexp(out, -2, keepdim=True)
    return torch.exp(out) if how == "exp" else out


BUGGY = {
    ("lsh_buckets", "no negated half"): lambda x, rotations: _buckets(x, rotations,
                                                                      "positive only"),
    ("lsh_buckets", "negated half first"): lambda x, rotations: _buckets(x, rotations,
                                                                         "minus first"),
    ("lsh_buckets", "absolute value"): lambda x, rotations: _buckets(x, rotations, "abs"),
    ("route_to_centroids", "dot product, not cosine"):
        lambda x, centroids: _route(x, centroids, "dot"),
    ("route_to_centroids", "euclidean distance"):
        lambda x, centroids: _route(x, centroids, "distance"),
    ("route_to_centroids", "argmin"): lambda x, centroids: _route(x, centroids, "min"),
    ("route_to_centroids", "first head's centroids for every head"):
        lambda x, centroids: _route(x, centroids, "one set"),
    ("sinkhorn_log", "columns first"):
        lambda log_alpha, n_iters=20: _sinkhorn(log_alpha, n_iters, "cols first"),
    ("sinkhorn_log", "linear domain"):
        lambda log_alpha, n_iters=20: _sinkhorn(log_alpha, n_iters, "linear"),
    ("sinkhorn_log", "rows only"): lambda log_alpha, n_iters=20: _sinkhorn(log_alpha, n_iters,
                                                                           "rows"),
    ("sinkhorn_log", "returns the matrix"):
        lambda log_alpha, n_iters=20: _sinkhorn(log_alpha, n_iters, "exp"),
}
