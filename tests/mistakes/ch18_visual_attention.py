"""Buggy versions of the exercises of exercises/18_visual_attention.ipynb, written the way a
student would (independently of the variants in attention_course.checks.chapters.ch18_*).
tests/test_checks.py checks that each one fails and gets the hint of its mistake."""
import torch


def _softmax_positions(scores, mask=None, how="good"):
    b, c, h, w = scores.shape
    if how == "channels":
        s = scores if mask is None else scores.masked_fill(mask.logical_not(), -float("inf"))
        return s.softmax(dim=1)
    if how in ("rows", "columns"):
        s = scores if mask is None else scores.masked_fill(mask.logical_not(), -float("inf"))
        return s.softmax(dim=3 if how == "rows" else 2)
    flat = scores.view(b, c, h * w)
    if how == "no max":
        e = flat.exp()
        if mask is not None:
            e = e * mask.view(mask.shape[0], 1, h * w).float().to(e.dtype)
        return (e / e.sum(2, keepdim=True)).view(b, c, h, w)
    if mask is None:
        return flat.softmax(2).view(b, c, h, w)
    keep = mask.reshape(mask.shape[0], 1, h * w)
    if how == "inverted":
        keep = keep.logical_not()
    if how == "after":
        return (flat.softmax(2) * keep).view(b, c, h, w)
    if how == "nan":
        return flat.masked_fill(keep.logical_not(), -float("inf")).softmax(2).view(b, c, h, w)
    filled = flat.masked_fill(keep.logical_not(), -float("inf"))
    mx = filled.max(2, keepdim=True).values
    mx = torch.nan_to_num(mx, neginf=0.0)
    e = (filled - mx).exp()
    z = e.sum(2, keepdim=True)
    return (e / z.clamp_min(1e-300)).view(b, c, h, w)


def _se(x, w1, b1, w2, b2, how="good"):
    if how == "max":
        z = x.flatten(2).max(dim=2).values
    elif how == "batch":
        z = x.mean(dim=[0, 2, 3]).unsqueeze(0).repeat(x.shape[0], 1)
    else:
        z = x.flatten(2).mean(dim=2)  # (B, C)
    hid = z @ w1.T + b1
    if how != "no relu":
        hid = hid.clamp(min=0)
    e = hid @ w2.T + b2
    if how == "no sigmoid":
        gate = e
    elif how == "softmax":
        gate = torch.softmax(e, dim=1)
    else:
        gate = 1 / (1 + torch.exp(-e))
    return x * gate.view(x.shape[0], x.shape[1], 1, 1)


def _pointing(attn, regions, how="good"):
    m, h, w = attn.shape
    H, W = regions.shape[1:]
    ph, pw = H // h, W // w
    hits = []
    for i in range(m):
        k = int(torch.argmax(attn[i]))
        if how == "pixel":
            hits.append(bool(regions[i].flatten()[k]))
            continue
        r, c = (k % w, k // w) if how == "swap" else (k // w, k % w)
        patch = regions[i, r * ph:(r + 1) * ph, c * pw:(c + 1) * pw]
        hits.append(bool(patch.all() if how == "all" else patch.any()))
    return torch.tensor(hits, dtype=attn.dtype).mean()


def _mass(attn, regions):
    m, h, w = attn.shape
    H, W = regions.shape[1:]
    cells = torch.nn.functional.max_pool2d(regions[:, None].to(attn.dtype), (H // h, W // w))
    inside = (attn * cells[:, 0]).sum(dim=(1, 2)) / attn.sum(dim=(1, 2))
    return inside.mean()


BUGGY = {
    ("spatial_softmax", "over channels"):
        lambda scores, mask=None: _softmax_positions(scores, mask, "channels"),
    ("spatial_softmax", "over width only"):
        lambda scores, mask=None: _softmax_positions(scores, mask, "rows"),
    ("spatial_softmax", "over height only"):
        lambda scores, mask=None: _softmax_positions(scores, mask, "columns"),
    ("spatial_softmax", "inverted mask"):
        lambda scores, mask=None: _softmax_positions(scores, mask, "inverted"),
    ("spatial_softmax", "mask after softmax"):
        lambda scores, mask=None: _softmax_positions(scores, mask, "after"),
    ("spatial_softmax", "NaN on fully masked maps"):
        lambda scores, mask=None: _softmax_positions(scores, mask, "nan"),
    ("spatial_softmax", "no max subtracted"):
        lambda scores, mask=None: _softmax_positions(scores, mask, "no max"),
    ("se_block", "no sigmoid"): lambda x, w1, b1, w2, b2: _se(x, w1, b1, w2, b2, "no sigmoid"),
    ("se_block", "softmax gate"): lambda x, w1, b1, w2, b2: _se(x, w1, b1, w2, b2, "softmax"),
    ("se_block", "max pooling"): lambda x, w1, b1, w2, b2: _se(x, w1, b1, w2, b2, "max"),
    ("se_block", "pooled over the batch"):
        lambda x, w1, b1, w2, b2: _se(x, w1, b1, w2, b2, "batch"),
    ("se_block", "no relu"): lambda x, w1, b1, w2, b2: _se(x, w1, b1, w2, b2, "no relu"),
    ("pointing_score", "pixel index"): lambda attn, regions: _pointing(attn, regions, "pixel"),
    ("pointing_score", "all pixels"): lambda attn, regions: _pointing(attn, regions, "all"),
    ("pointing_score", "transposed"): lambda attn, regions: _pointing(attn, regions, "swap"),
    ("pointing_score", "attention mass"): _mass,
}
