"""Buggy versions of the exercises of exercises/05_luong.ipynb, written the way a student
would (independently of the variants in attention_course.checks.chapters.ch05_*).
tests/test_checks.py checks that each one fails and gets the hint of its mistake."""
import torch


def _ls(s, enc, m, wa, wc, how="good"):
    if how == "transposed":
        scores = torch.einsum("bne,ed,bd->bn", enc, wa, s)
    else:
        scores = torch.einsum("bd,de,bne->bn", s, wa, enc)
    keep = {"inverted": ~m, "ignored": torch.ones_like(m)}.get(how, m)
    a = torch.nan_to_num(torch.softmax(scores.masked_fill(~keep, float("-inf")), -1))
    c = torch.einsum("bn,bne->be", a, enc)
    both = torch.cat([s, c] if how == "order" else [c, s], -1) @ wc.T
    return both if how == "no tanh" else torch.tanh(both)


def _lp(scores, p, d, how="good"):
    j = torch.arange(scores.shape[1], dtype=scores.dtype)
    off = j[None] - p[:, None]
    inside = off.abs() < d if how == "strict" else off.abs() <= d
    if how == "no window":
        inside = torch.ones_like(inside)
    sigma = d if how == "sigma" else d / 2
    if how == "inside":
        return torch.softmax((scores - off**2 / (2 * sigma**2)).masked_fill(~inside, -torch.inf),
                             -1)
    a = torch.softmax(scores.masked_fill(~inside, -torch.inf), -1)
    return a if how == "no gauss" else a * torch.exp(-(off / sigma) ** 2 / 2)


BUGGY = {
    ("luong_attentional_state", "[s; c] instead of [c; s]"): lambda *a: _ls(*a, how="order"),
    ("luong_attentional_state", "no tanh"): lambda *a: _ls(*a, how="no tanh"),
    ("luong_attentional_state", "inverted mask"): lambda *a: _ls(*a, how="inverted"),
    ("luong_attentional_state", "mask ignored"): lambda *a: _ls(*a, how="ignored"),
    ("luong_attentional_state", "W_a transposed"): lambda *a: _ls(*a, how="transposed"),
    ("local_p_weights", "sigma = D"): lambda s, p, d: _lp(s, p, d, "sigma"),
    ("local_p_weights", "Gaussian missing"): lambda s, p, d: _lp(s, p, d, "no gauss"),
    ("local_p_weights", "window missing"): lambda s, p, d: _lp(s, p, d, "no window"),
    ("local_p_weights", "Gaussian inside the softmax"): lambda s, p, d: _lp(s, p, d, "inside"),
    ("local_p_weights", "strict window"): lambda s, p, d: _lp(s, p, d, "strict"),
}
