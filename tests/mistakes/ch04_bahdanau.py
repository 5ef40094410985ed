"""Buggy versions of the exercises of exercises/04_bahdanau.ipynb, written the way a student
would (independently of the variants in attention_course.checks.chapters.ch04_*).
tests/test_checks.py checks that each one fails and gets the hint of its mistake."""
import torch


def _bc(s, enc, m, ws, wh, v, how="good"):
    e = (s @ ws.T)[:, None] + torch.einsum("bnh,ah->bna", enc, wh)
    if how != "no tanh":
        e = torch.tanh(e)
    scores = e @ v
    if how == "after":
        a = torch.softmax(scores, 1) * m
    elif how == "ignored":
        a = torch.softmax(scores, 1)
    else:
        keep = ~m if how == "inverted" else m
        a = torch.softmax(scores.masked_fill(~keep, float("-inf")), 0 if how == "batch" else 1)
        a = torch.nan_to_num(a)
    return (a.unsqueeze(-1) * enc).sum(1)


def _aer(w, gold, how):
    if how == "column":
        pred = torch.zeros_like(gold)
        pred[w.argmax(0), torch.arange(w.shape[1])] = True
    else:
        pred = torch.zeros_like(gold)
        pred[torch.arange(w.shape[0]), w.argmax(1)] = True
    hit = (pred & gold).sum().to(w.dtype)
    na, ns = pred.sum().to(w.dtype), gold.sum().to(w.dtype)
    return {"column": 1 - 2 * hit / (na + ns), "f1": 2 * hit / (na + ns),
            "precision": 1 - hit / na, "recall": 1 - hit / ns}[how]


BUGGY = {
    ("bahdanau_context", "inverted mask"): lambda *a: _bc(*a, how="inverted"),
    ("bahdanau_context", "mask after softmax"): lambda *a: _bc(*a, how="after"),
    ("bahdanau_context", "mask ignored"): lambda *a: _bc(*a, how="ignored"),
    ("bahdanau_context", "no tanh"): lambda *a: _bc(*a, how="no tanh"),
    ("bahdanau_context", "softmax over the batch"): lambda *a: _bc(*a, how="batch"),
    ("hard_alignment_aer", "argmax over the target"): lambda w, g: _aer(w, g, "column"),
    ("hard_alignment_aer", "F1 instead of AER"): lambda w, g: _aer(w, g, "f1"),
    ("hard_alignment_aer", "precision only"): lambda w, g: _aer(w, g, "precision"),
    ("hard_alignment_aer", "recall only"): lambda w, g: _aer(w, g, "recall"),
}
