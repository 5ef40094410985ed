"""Buggy versions of the exercises of exercises/14_linear_attention.ipynb, written the way a
student would (independently of the variants in attention_course.checks.chapters.ch14_*).
tests/test_checks.py checks that each one fails and gets the hint of its mistake."""
import torch
import torch.nn.functional as F


def _phi(x):
    return F.elu(x) + 1


def _linear(q, k, v, mask=None, how="good"):
    fq, fk = (q, k) if how == "no phi" else (_phi(q), _phi(k))
    if mask is not None and how != "ignored":
        keep = mask if how != "inverted" else mask.logical_not()
        fk = fk * keep.reshape(keep.shape[0], 1, -1, 1).to(fk.dtype)
    s = torch.einsum("bhkf,bhkv->bhfv", fk, v)
    numer = torch.einsum("bhqf,bhfv->bhqv", fq, s)
    if how == "no norm":
        return numer
    denom = torch.einsum("bhqf,bhf->bhq", fq, fk.sum(2))[..., None]
    if how == "nan":
        return numer / denom
    return numer / denom.masked_fill(denom == 0, 1.0)


def _recurrent(q, k, v, how="good"):
    fq, fk = (q, k) if how == "no phi" else (_phi(q), _phi(k))
    n = q.shape[2]
    if how == "full":
        s_all = torch.einsum("bhkf,bhkv->bhfv", fk, v)
        z_all = fk.sum(2)
    outs = []
    s = torch.zeros(q.shape[0], q.shape[1], fk.shape[-1], v.shape[-1], dtype=q.dtype)
    z = torch.zeros(q.shape[0], q.shape[1], fk.shape[-1], dtype=q.dtype)
    for t in range(n):
        if how == "read first":
            num = torch.einsum("bhf,bhfv->bhv", fq[:, :, t], s)
            den = torch.einsum("bhf,bhf->bh", fq[:, :, t], z)[..., None]
            outs.append(num / (den + 1e-12))
        s = s + torch.einsum("bhf,bhv->bhfv", fk[:, :, t], v[:, :, t])
        z = z + fk[:, :, t]
        if how == "read first":
            continue
        ss, zz = (s_all, z_all) if how == "full" else (s, z)
        num = torch.einsum("bhf,bhfv->bhv", fq[:, :, t], ss)
        if how == "no norm":
            outs.append(num)
            continue
        outs.append(num / torch.einsum("bhf,bhf->bh", fq[:, :, t], zz)[..., None])
    return torch.stack(outs, 2)


BUGGY = {
    ("elu_plus_one", "plain elu"): lambda x: F.elu(x),
    ("elu_plus_one", "relu + 1"): lambda x: torch.clamp(x, min=0) + 1,
    ("elu_plus_one", "relu"): lambda x: torch.relu(x),
    ("elu_plus_one", "exp"): lambda x: x.exp(),
    ("linear_attention_elu", "no normaliser"):
        lambda q, k, v, attn_mask=None: _linear(q, k, v, attn_mask, "no norm"),
    ("linear_attention_elu", "no feature map"):
        lambda q, k, v, attn_mask=None: _linear(q, k, v, attn_mask, "no phi"),
    ("linear_attention_elu", "inverted mask"):
        lambda q, k, v, attn_mask=None: _linear(q, k, v, attn_mask, "inverted"),
    ("linear_attention_elu", "mask ignored"):
        lambda q, k, v, attn_mask=None: _linear(q, k, v, attn_mask, "ignored"),
    ("linear_attention_elu", "NaN on fully masked rows"):
        lambda q, k, v, attn_mask=None: _linear(q, k, v, attn_mask, "nan"),
    ("causal_linear_recurrence", "no normaliser"): lambda q, k, v: _recurrent(q, k, v, "no norm"),
    ("causal_linear_recurrence", "not causal"): lambda q, k, v: _recurrent(q, k, v, "full"),
    ("causal_linear_recurrence", "read before write"):
        lambda q, k, v: _recurrent(q, k, v, "read first"),
    ("causal_linear_recurrence", "no feature map"): lambda q, k, v: _recurrent(q, k, v, "no phi"),
}
