"""RNN encoder-decoders for Part I: the plain bottleneck model, Bahdanau and Luong attention.

Every model maps a padded batch of source token ids to target logits and, when it attends,
the attention weights it used at each target step:

    src: (B, Ns) int, src_len: (B,) int, tgt_in: (B, Nt) int  ->  logits (B, Nt, V),
                                                                   attn (B, Nt, Ns) or None

Decoding (:func:`greedy_decode`, :func:`beam_search`) returns the weights used at each
generated step too, so chapters can draw alignments and measure them against gold ones.

* :class:`Encoder` -- embedding + (bidirectional) GRU; returns every state and a summary.
* :class:`PlainDecoder` -- Cho et al. (2014) / Sutskever et al. (2014): the decoder sees the
  source only through one fixed-length vector, the encoder's summary.
* :class:`BahdanauDecoder` -- Bahdanau, Cho and Bengio (2014): at step t the previous decoder
  state s_{t-1} queries all encoder states with the additive score.
* :class:`LuongDecoder` -- Luong, Pham and Manning (2015): the new state s_t queries the
  encoder states (global: dot / general / concat; local-p: a predicted centre p_t and a
  Gaussian window), the context and s_t are combined into an attentional state h~_t, and
  with input feeding h~_{t-1} is also fed to the next step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from . import functional as AF
from ._validate import check_int, check_tensor, shape_str
from .masks import mask_to_bias, padding_mask

Tensor = torch.Tensor

__all__ = ["Encoder", "PlainDecoder", "BahdanauDecoder", "LuongDecoder", "Seq2Seq",
           "greedy_decode", "beam_search", "BeamResult", "build_seq2seq", "translate",
           "teacher_forced_attention"]


def _check_batch(src: Tensor, src_len: Tensor) -> None:
    check_tensor("src", src, ndim=2, floating=False, layout="(B, Ns)")
    check_tensor("src_len", src_len, ndim=1, floating=False, layout="(B,)")
    if src.dtype.is_floating_point or src_len.dtype.is_floating_point:
        raise TypeError(f"src and src_len must be integer tensors, got {src.dtype} and "
                        f"{src_len.dtype}")
    if src_len.shape[0] != src.shape[0]:
        raise ValueError(f"src_len {shape_str(src_len)} must have one length per row of src "
                         f"{shape_str(src)}")
    if src_len.numel() and (int(src_len.min()) < 1 or int(src_len.max()) > src.shape[1]):
        raise ValueError(f"src_len must be in [1, Ns={src.shape[1]}], got min "
                         f"{int(src_len.min())}, max {int(src_len.max())}")


def _check_tgt_in(tgt_in: Tensor, src: Tensor, src_name: str = "src") -> None:
    """tgt_in: (B, Nt) integer token ids, one row per row of ``src`` (or the images)."""
    check_tensor("tgt_in", tgt_in, ndim=2, floating=False, layout="(B, Nt)")
    if tgt_in.is_floating_point():
        raise TypeError(f"tgt_in must hold integer token ids, got dtype {tgt_in.dtype} "
                        f"with shape {shape_str(tgt_in)}")
    if tgt_in.shape[0] != src.shape[0]:
        raise ValueError(f"tgt_in {shape_str(tgt_in)} and {src_name} {shape_str(src)} must "
                         f"have the same batch size")


# --------------------------------------------------------------------------- encoder
class Encoder(nn.Module):
    """Embedding + GRU over the source.

    src: (B, Ns) int, src_len: (B,) -> ``(states, summary)`` with states (B, Ns, enc_dim)
    (zeros at padding) and summary (B, enc_dim): the last real state of each direction,
    concatenated. ``enc_dim = hidden_size * (2 if bidirectional else 1)``.
    """

    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int, *,
                 bidirectional: bool = True, num_layers: int = 1, dropout: float = 0.0,
                 pad_id: int = 0):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.rnn = nn.GRU(embed_dim, hidden_size, num_layers=num_layers, batch_first=True,
                          bidirectional=bidirectional,
                          dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.enc_dim = hidden_size * (2 if bidirectional else 1)
        self.bidirectional, self.num_layers = bidirectional, num_layers

    def forward(self, src: Tensor, src_len: Tensor):
        _check_batch(src, src_len)
        emb = self.dropout(self.embedding(src))  # (B, Ns, E)
        packed = pack_padded_sequence(emb, src_len.cpu(), batch_first=True, enforce_sorted=False)
        out, h = self.rnn(packed)  # h: (layers * dirs, B, hidden)
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        dirs = 2 if self.bidirectional else 1
        last = h.view(self.num_layers, dirs, *h.shape[1:])[-1]  # (dirs, B, hidden)
        summary = last.transpose(0, 1).reshape(src.shape[0], -1)  # (B, enc_dim)
        return states, summary  # (B, Ns, enc_dim), (B, enc_dim)


# --------------------------------------------------------------------------- decoders
class PlainDecoder(nn.Module):
    """GRU decoder conditioned on one vector: the encoder's summary c (Cho et al., 2014).

    c initialises the state and is fed again at every step, s_t = GRU([e(y_{t-1}); c], s_{t-1});
    logits = W [s_t; e(y_{t-1}); c]. Whatever the source length, the decoder sees only c.
    """

    attends = False

    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int, enc_dim: int, *,
                 dropout: float = 0.0, pad_id: int = 0):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.init = nn.Linear(enc_dim, hidden_size)
        self.rnn = nn.GRU(embed_dim + enc_dim, hidden_size, batch_first=True)
        self.out = nn.Linear(hidden_size + embed_dim + enc_dim, vocab_size)
        self.dropout = nn.Dropout(dropout)

    def init_state(self, states: Tensor, summary: Tensor, src_mask: Tensor):
        return {"h": torch.tanh(self.init(summary)), "c": summary}

    def step(self, y_prev: Tensor, state):
        """One step. y_prev: (B,) -> logits (B, V), new state, attention None."""
        logits, state, _ = self._run(y_prev[:, None], state)
        return logits[:, 0], state, None

    def _run(self, y: Tensor, state):
        c = state["c"]
        emb = self.dropout(self.embedding(y))  # (B, T, E)
        ctx = c[:, None].expand(-1, y.shape[1], -1)  # (B, T, enc_dim)
        out, h = self.rnn(torch.cat([emb, ctx], -1), state["h"][None])  # (B, T, H)
        logits = self.out(self.dropout(torch.cat([out, emb, ctx], -1)))  # (B, T, V)
        return logits, {"h": h[0], "c": c}, None

    def forward(self, tgt_in: Tensor, states: Tensor, summary: Tensor, src_mask: Tensor):
        logits, _, _ = self._run(tgt_in, self.init_state(states, summary, src_mask))
        return logits, None


class BahdanauDecoder(nn.Module):
    """GRU decoder with additive attention (Bahdanau, Cho and Bengio, 2014, appendix A).

    At step t: e_{tj} = v^T tanh(W s_{t-1} + U h_j); alpha_t = softmax_j(e_t) over real source
    positions; c_t = sum_j alpha_{tj} h_j; s_t = GRU([e(y_{t-1}); c_t], s_{t-1});
    logits = W_o [s_t; c_t; e(y_{t-1})]. The keys' projection U h_j is computed once per
    sentence, not once per step.
    """

    attends = True

    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int, enc_dim: int, *,
                 attn_dim: Optional[int] = None, dropout: float = 0.0, pad_id: int = 0):
        super().__init__()
        attn_dim = attn_dim or hidden_size
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.init = nn.Linear(enc_dim, hidden_size)
        self.W_q = nn.Linear(hidden_size, attn_dim, bias=False)
        self.W_k = nn.Linear(enc_dim, attn_dim, bias=False)
        self.v = nn.Linear(attn_dim, 1, bias=False)
        self.cell = nn.GRUCell(embed_dim + enc_dim, hidden_size)
        self.out = nn.Linear(hidden_size + enc_dim + embed_dim, vocab_size)
        self.dropout = nn.Dropout(dropout)

    def init_state(self, states: Tensor, summary: Tensor, src_mask: Tensor):
        # the mask as an additive bias, built once per sentence: every row has a real source
        # token (src_len >= 1), so softmax(scores + bias) equals masked_softmax(scores, mask)
        bias = mask_to_bias(src_mask, states.dtype)  # (B, Ns)
        return {"h": torch.tanh(self.init(summary)), "states": states,
                "keys": self.W_k(states), "mask": src_mask, "bias": bias}  # keys: (B, Ns, A)

    def _attend(self, h: Tensor, state):
        """h = s_{t-1}: (B, H) -> weights (B, Ns), context (B, enc_dim)."""
        hidden = torch.tanh(self.W_q(h)[:, None] + state["keys"])  # (B, Ns, A)
        scores = self.v(hidden)[..., 0] + state["bias"]  # (B, Ns)
        alpha = torch.softmax(scores, dim=-1)  # (B, Ns), exactly 0 at padding
        context = torch.bmm(alpha[:, None], state["states"])[:, 0]  # (B, enc_dim)
        return alpha, context

    def step(self, y_prev: Tensor, state):
        """One step. y_prev: (B,) -> logits (B, V), new state, attention (B, Ns)."""
        alpha, context = self._attend(state["h"], state)
        emb = self.dropout(self.embedding(y_prev))  # (B, E)
        h = self.cell(torch.cat([emb, context], -1), state["h"])  # (B, H)
        logits = self.out(self.dropout(torch.cat([h, context, emb], -1)))  # (B, V)
        return logits, {**state, "h": h}, alpha

    def forward(self, tgt_in: Tensor, states: Tensor, summary: Tensor, src_mask: Tensor):
        # the same computation as calling step() for t = 0, 1, ..., but the embedding and the
        # output projection, which do not feed back into the recurrence, run once for all t
        state = self.init_state(states, summary, src_mask)
        emb = self.dropout(self.embedding(tgt_in))  # (B, Nt, E)
        h, hs, contexts, attn = state["h"], [], [], []
        for t in range(tgt_in.shape[1]):
            alpha, context = self._attend(h, state)
            h = self.cell(torch.cat([emb[:, t], context], -1), h)  # (B, H)
            hs.append(h)
            contexts.append(context)
            attn.append(alpha)
        hs, contexts = torch.stack(hs, 1), torch.stack(contexts, 1)  # (B, Nt, H), (B, Nt, C)
        logits = self.out(self.dropout(torch.cat([hs, contexts, emb], -1)))  # (B, Nt, V)
        return logits, torch.stack(attn, 1)  # (B, Nt, V), (B, Nt, Ns)


class LuongDecoder(nn.Module):
    """GRU decoder with Luong et al. (2015) attention.

    s_t = GRU(x_t, s_{t-1}) with x_t = [e(y_{t-1}); h~_{t-1}] (input feeding) or e(y_{t-1});
    a_t = align(s_t, h_j); c_t = sum_j a_{tj} h_j; h~_t = tanh(W_c [c_t; s_t]); logits = W_s h~_t.

    score: ``"dot"`` (needs enc_dim == hidden_size), ``"general"`` (s^T W h) or
    ``"concat"`` (v^T tanh(W [s; h])). local: ``None`` for global attention, or ``"p"`` for
    local-p: p_t = S sigmoid(v_p^T tanh(W_p s_t)) with S the source length, the alignment
    restricted to [p_t - window, p_t + window] and multiplied by exp(-(j - p_t)^2 / (2 sigma^2)),
    sigma = window / 2 (eq. 9-10). Without input feeding and with global attention, all target
    steps run in one GRU call and one batched attention.
    """

    attends = True

    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int, enc_dim: int, *,
                 score: str = "general", local: Optional[str] = None, window: int = 5,
                 input_feeding: bool = True, dropout: float = 0.0, pad_id: int = 0):
        super().__init__()
        if score not in ("dot", "general", "concat"):
            raise ValueError(f"score must be 'dot', 'general' or 'concat', got {score!r}")
        if local not in (None, "p"):
            raise ValueError(f"local must be None (global attention) or 'p', got {local!r}")
        if score == "dot" and enc_dim != hidden_size:
            raise ValueError(f"the dot score needs enc_dim == hidden_size, got enc_dim={enc_dim}"
                             f" and hidden_size={hidden_size}; use score='general'")
        self.score, self.local, self.window = score, local, window
        self.input_feeding = input_feeding
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.init = nn.Linear(enc_dim, hidden_size)
        self.rnn = nn.GRU(embed_dim + (hidden_size if input_feeding else 0), hidden_size,
                          batch_first=True)
        if score == "general":
            self.W_a = nn.Parameter(torch.randn(hidden_size, enc_dim) / math.sqrt(enc_dim))
        elif score == "concat":
            self.W_a = nn.Parameter(torch.randn(hidden_size, hidden_size + enc_dim)
                                    / math.sqrt(hidden_size + enc_dim))
            self.v_a = nn.Parameter(torch.randn(hidden_size) / math.sqrt(hidden_size))
        if local == "p":
            self.W_p = nn.Linear(hidden_size, hidden_size, bias=False)
            self.v_p = nn.Linear(hidden_size, 1, bias=False)
        self.W_c = nn.Linear(enc_dim + hidden_size, hidden_size, bias=False)
        self.out = nn.Linear(hidden_size, vocab_size)
        self.dropout = nn.Dropout(dropout)
        self.hidden_size = hidden_size

    def init_state(self, states: Tensor, summary: Tensor, src_mask: Tensor):
        b = states.shape[0]
        return {"h": torch.tanh(self.init(summary)), "states": states, "mask": src_mask,
                "feed": states.new_zeros(b, self.hidden_size),
                "src_len": src_mask.sum(-1).to(states.dtype)}

    def _align(self, s: Tensor, state) -> Tensor:
        """s: (B, T, H) decoder states -> weights (B, T, Ns)."""
        h = state["states"]
        if self.score == "dot":
            scores = AF.dot_score(s, h)
        elif self.score == "general":
            scores = AF.general_score(s, h, self.W_a)
        else:
            scores = AF.concat_score(s, h, self.W_a, self.v_a)  # (B, T, Ns)
        mask = state["mask"][:, None, :]  # (B, 1, Ns)
        if self.local is None:
            return AF.masked_softmax(scores, mask)
        n_src = state["src_len"][:, None, None]  # (B, 1, 1)
        p = n_src * torch.sigmoid(self.v_p(torch.tanh(self.W_p(s))))  # (B, T, 1)
        j = torch.arange(h.shape[1], device=h.device, dtype=s.dtype)  # (Ns,)
        in_window = (j - p).abs() <= self.window  # (B, T, Ns)
        # the predicted centre can land beyond the window of every real word: fall back to
        # the nearest real word so that a row is never empty
        nearest = (j - p.clamp(max=n_src - 1)).abs().argmin(-1, keepdim=True)
        in_window = in_window | torch.zeros_like(in_window).scatter_(-1, nearest, True)
        a = AF.masked_softmax(scores, mask & in_window)
        sigma = self.window / 2
        return a * torch.exp(-((j - p) ** 2) / (2 * sigma ** 2))  # (B, T, Ns), eq. 10

    def _attend(self, s: Tensor, state):
        a = self._align(s, state)  # (B, T, Ns)
        c = torch.bmm(a, state["states"])  # (B, T, enc_dim)
        h_tilde = torch.tanh(self.W_c(torch.cat([c, s], -1)))  # (B, T, H)
        return self.out(self.dropout(h_tilde)), h_tilde, a

    def step(self, y_prev: Tensor, state):
        """One step. y_prev: (B,) -> logits (B, V), new state, attention (B, Ns)."""
        emb = self.dropout(self.embedding(y_prev))[:, None]  # (B, 1, E)
        x = torch.cat([emb, state["feed"][:, None]], -1) if self.input_feeding else emb
        s, h = self.rnn(x, state["h"][None])  # (B, 1, H)
        logits, h_tilde, a = self._attend(s, state)
        return logits[:, 0], {**state, "h": h[0], "feed": h_tilde[:, 0]}, a[:, 0]

    def forward(self, tgt_in: Tensor, states: Tensor, summary: Tensor, src_mask: Tensor):
        state = self.init_state(states, summary, src_mask)
        if not self.input_feeding:  # every step at once: s_t does not depend on h~
            s, _ = self.rnn(self.dropout(self.embedding(tgt_in)), state["h"][None])
            logits, _, a = self._attend(s, state)
            return logits, a
        logits, attn = [], []
        for t in range(tgt_in.shape[1]):
            lt, state, at = self.step(tgt_in[:, t], state)
            logits.append(lt)
            attn.append(at)
        return torch.stack(logits, 1), torch.stack(attn, 1)


# --------------------------------------------------------------------------- model
class Seq2Seq(nn.Module):
    """Encoder + decoder. forward(src, src_len, tgt_in) -> (logits (B, Nt, V), attn or None)."""

    def __init__(self, encoder: Encoder, decoder: nn.Module):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    @property
    def attends(self) -> bool:
        return bool(getattr(self.decoder, "attends", False))

    def encode(self, src: Tensor, src_len: Tensor):
        states, summary = self.encoder(src, src_len)
        mask = padding_mask(src_len, src.shape[1])  # (B, Ns)
        return states, summary, mask

    def alignment(self, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> Optional[Tensor]:
        """The attention weights (B, Nt, Ns) of a teacher-forced pass (a model that computes
        no weights in ``forward`` overrides this to ask for them)."""
        return self(src, src_len, tgt_in)[1]

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor):
        _check_tgt_in(tgt_in, src)
        states, summary, mask = self.encode(src, src_len)
        return self.decoder(tgt_in, states, summary, mask)


def build_seq2seq(kind: str, src_vocab: int, tgt_vocab: int, *, embed_dim: int = 64,
                  hidden_size: int = 128, dropout: float = 0.0, pad_id: int = 0,
                  **decoder_kwargs) -> Seq2Seq:
    """A bidirectional-GRU encoder and a decoder of ``kind``: ``"plain"``, ``"bahdanau"`` or
    ``"luong"`` (decoder_kwargs: score, local, window, input_feeding). The encoder's
    hidden size per direction is hidden_size // 2, so enc_dim == hidden_size."""
    enc = Encoder(src_vocab, embed_dim, hidden_size // 2, bidirectional=True, dropout=dropout,
                  pad_id=pad_id)
    cls = {"plain": PlainDecoder, "bahdanau": BahdanauDecoder, "luong": LuongDecoder}
    if kind not in cls:
        raise ValueError(f"kind must be one of {sorted(cls)}, got {kind!r}")
    dec = cls[kind](tgt_vocab, embed_dim, hidden_size, enc.enc_dim, dropout=dropout,
                    pad_id=pad_id, **decoder_kwargs)
    return Seq2Seq(enc, dec)


# --------------------------------------------------------------------------- decoding
@torch.no_grad()
def greedy_decode(model: Seq2Seq, src: Tensor, src_len: Tensor, *, bos_id: int, eos_id: int,
                  max_len: int = 100):
    """Greedy decoding of a batch.

    Returns ``(tokens, attn)``: tokens (B, T) int, padded with eos after each sentence ends;
    attn (B, T, Ns) weights used at each generated step (None for a model without attention).
    T <= max_len; decoding stops when every sentence has produced eos.
    """
    states, summary, mask = model.encode(src, src_len)
    state = model.decoder.init_state(states, summary, mask)
    y = torch.full((src.shape[0],), bos_id, dtype=torch.long, device=src.device)
    done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    tokens, attn = [], []
    for _ in range(max_len):
        logits, state, a = model.decoder.step(y, state)
        y = logits.argmax(-1).masked_fill(done, eos_id)  # (B,)
        tokens.append(y)
        if a is not None:
            attn.append(a)
        done = done | (y == eos_id)
        if bool(done.all()):
            break
    return torch.stack(tokens, 1), (torch.stack(attn, 1) if attn else None)


@dataclass
class BeamResult:
    """One decoded sentence: token ids (without bos, with eos if produced), its total
    log-probability, and the attention weights used at each step (T, Ns) or None."""
    tokens: list
    log_prob: float
    attn: Optional[Tensor]


def _index_state(state, idx: Tensor):
    return {k: (v[idx] if isinstance(v, torch.Tensor) else v) for k, v in state.items()}


@torch.no_grad()
def beam_search(model: Seq2Seq, src: Tensor, src_len: Tensor, *, bos_id: int, eos_id: int,
                beam_size: int = 4, max_len: int = 100, length_penalty: float = 1.0):
    """Beam search, one sentence at a time (src: (1, Ns)). Returns the best :class:`BeamResult`.

    Hypotheses are ranked by log p / len^length_penalty (Wu et al., 2016 without the
    constant). With beam_size=1 it equals :func:`greedy_decode`.
    """
    if src.shape[0] != 1:
        raise ValueError(f"beam_search decodes one sentence: src must be (1, Ns), got "
                         f"{shape_str(src)}")
    states, summary, mask = model.encode(src, src_len)
    state = model.decoder.init_state(states, summary, mask)
    beams = [([], 0.0, [])]  # tokens, log prob, attention rows
    finished: list[BeamResult] = []
    for _ in range(max_len):
        y = torch.tensor([b[0][-1] if b[0] else bos_id for b in beams], device=src.device)
        logits, st, a = model.decoder.step(y, state)  # state holds one row per beam
        logp = torch.log_softmax(logits.float(), -1)  # (k, V)
        total = logp + torch.tensor([b[1] for b in beams], device=src.device)[:, None]
        top_v, top_i = total.view(-1).topk(min(beam_size, total.numel()))
        new_beams, keep = [], []
        for v, i in zip(top_v.tolist(), top_i.tolist()):
            parent, tok = divmod(i, logp.shape[1])
            toks = beams[parent][0] + [tok]
            rows = beams[parent][2] + ([a[parent]] if a is not None else [])
            if tok == eos_id:
                finished.append(BeamResult(toks, v, torch.stack(rows) if rows else None))
            else:
                new_beams.append((toks, v, rows))
                keep.append(parent)
        if not new_beams or len(finished) >= beam_size:
            break
        beams = new_beams
        state = _index_state(st, torch.tensor(keep, device=src.device))
    if not finished:
        finished = [BeamResult(b[0], b[1], torch.stack(b[2]) if b[2] else None) for b in beams]
    return max(finished, key=lambda r: r.log_prob / max(len(r.tokens), 1) ** length_penalty)


# --------------------------------------------------------------------------- whole splits
def _sentence_batches(corpus, index, batch_size: int):
    check_int("batch_size", batch_size, 1)
    index = [int(i) for i in index]
    if not index:
        raise ValueError("index is empty: nothing to translate")
    order = sorted(range(len(index)), key=lambda k: len(corpus.pairs[index[k]].src))
    for k in range(0, len(order), batch_size):
        yield order[k:k + batch_size], [index[o] for o in order[k:k + batch_size]]


def _per_sentence(model, corpus, index, batch_size: int, device, fn) -> list:
    """Run ``fn(batch) -> one result per row`` over ``index`` in length-sorted batches, in
    eval mode (the model's mode is restored afterwards); results in the order of ``index``."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = [None] * len(index)
    try:
        for pos, idx in _sentence_batches(corpus, index, batch_size):
            for p, result in zip(pos, fn(corpus.batch(idx, device))):
                out[p] = result
    finally:
        model.train(was_training)
    return out


@torch.no_grad()
def translate(model: Seq2Seq, corpus, index, *, batch_size: int = 256, extra_len: int = 20,
              device=None) -> list:
    """Greedy translations of the pairs ``corpus.pairs[i]`` for i in ``index``, in that order.

    corpus: an :class:`attention_lib.data.Corpus` (anything with ``pairs``, ``batch(index,
    device)`` and ``tgt_vocab``). Sentences are decoded in batches of similar length; each
    batch may run up to ``extra_len`` steps beyond its longest reference. Returns one list of
    target tokens per pair (without <eos>), ready for :func:`attention_lib.metrics.corpus_bleu`.
    Equivalent to :func:`greedy_decode` on each sentence alone.
    """
    def decode(batch):
        max_len = int(batch.tgt_len.max()) + extra_len
        tokens, _ = greedy_decode(model, batch.src, batch.src_len, bos_id=corpus.tgt_vocab.bos_id,
                                  eos_id=corpus.tgt_vocab.eos_id, max_len=max_len)
        return [corpus.tgt_vocab.decode(row) for row in tokens.cpu()]

    return _per_sentence(model, corpus, index, batch_size, device, decode)


@torch.no_grad()
def teacher_forced_attention(model: Seq2Seq, corpus, index, *, batch_size: int = 256,
                             device=None) -> list:
    """The attention weights of a teacher-forced pass over the reference translations.

    Row j of each matrix belongs to the decoder step that predicts gold target token j, so
    the weights line up with the gold alignment whatever the model would have generated
    (the way to measure AER, :func:`attention_lib.metrics.attention_aer`). Returns one
    float32 CPU tensor ``(len(tgt) + 1, len(src) + 1)`` per pair, in the order of ``index``:
    target words + <eos> step by source words + <eos>, padding removed.
    """
    if not model.attends:
        raise ValueError("teacher_forced_attention needs a model with attention; this "
                         "decoder has none (kind 'plain')")

    def weights(batch):
        attn = model.alignment(batch.src, batch.src_len, batch.tgt_in)  # (B, Nt, Ns)
        attn = attn.float().cpu()
        return [attn[b, :int(batch.tgt_len[b]), :int(batch.src_len[b])].clone()
                for b in range(attn.shape[0])]

    return _per_sentence(model, corpus, index, batch_size, device, weights)
