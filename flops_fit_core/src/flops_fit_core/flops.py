"""Parameter and FLOP accounting for the decoder-only transformer flops-fit trains.

The model is a pre-LN GPT without biases: an untied input embedding and readout (V x d each),
rotary positions (no parameters), per layer a causal self-attention block (Q, K, V, output:
4 d^2) and an MLP (2 d d_ff), two norms per layer with a weight vector each, and a final norm.

Parameters come in two conventions, both recorded with every result:

* ``total``: every parameter, embedding and readout included (Chinchilla's N);
* ``non_embedding``: without the two vocabulary matrices (Kaplan's N).

FLOPs per token come in two conventions too:

* ``exact``: the forward+backward count of Chinchilla's appendix F (Hoffmann et al. 2022):
  embeddings, the QKV/output projections, the attention logits and the weighted sum over
  values (quadratic in the sequence length, not halved for causality), the softmax, the MLP
  and the final logits; backward = 2 x forward.
* ``6n``: the usual 6 N approximation, N in the chosen parameter convention.

Everything here is plain arithmetic on ints and numpy arrays, so the planner can search a shape
grid for thousands of experiments at once.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "FlopsConvention",
    "ParamConvention",
    "flops_per_token",
    "flops_per_token_6n",
    "flops_per_token_exact",
    "params_count",
    "params_non_embedding",
    "params_total",
]

ParamConvention = Literal["total", "non_embedding"]
FlopsConvention = Literal["exact", "6n"]


def params_non_embedding(d_model, n_layers, d_ff):
    """Parameters outside the vocabulary matrices: attention, MLP and norm weights."""
    per_layer = 4 * d_model * d_model + 2 * d_model * d_ff + 2 * d_model
    return n_layers * per_layer + d_model


def params_total(d_model, n_layers, d_ff, vocab_size):
    """Every parameter: the non-embedding ones plus the input embedding and the readout."""
    return params_non_embedding(d_model, n_layers, d_ff) + 2 * vocab_size * d_model


def params_count(d_model, n_layers, d_ff, vocab_size, convention: ParamConvention = "total"):
    """N under a named convention."""
    if convention == "total":
        return params_total(d_model, n_layers, d_ff, vocab_size)
    if convention == "non_embedding":
        return params_non_embedding(d_model, n_layers, d_ff)
    raise ValueError(f"unknown parameter convention {convention!r}; use 'total' or 'non_embedding'")


def flops_per_token_exact(d_model, n_layers, n_heads, d_ff, vocab_size, seq_len):
    """Forward+backward FLOPs per token, Chinchilla appendix F (attention included)."""
    d, t = d_model, seq_len
    embeddings = 2 * vocab_size * d
    attention = (
        2 * 3 * d * d  # Q, K, V projections (key size x heads = d_model)
        + 2 * t * d  # query @ key logits, per query token
        + 3 * n_heads * t  # softmax
        + 2 * t * d  # softmax @ values
        + 2 * d * d  # output projection
    )
    mlp = 2 * 2 * d * d_ff
    logits = 2 * d * vocab_size
    forward = embeddings + n_layers * (attention + mlp) + logits
    return 3 * forward


def flops_per_token_6n(d_model, n_layers, d_ff, vocab_size, params: ParamConvention = "total"):
    """The 6 N approximation, N in the given parameter convention."""
    return 6 * params_count(d_model, n_layers, d_ff, vocab_size, params)


def flops_per_token(
    d_model,
    n_layers,
    n_heads,
    d_ff,
    vocab_size,
    seq_len,
    convention: FlopsConvention = "exact",
    params: ParamConvention = "total",
):
    """FLOPs per trained token under a named convention."""
    if convention == "exact":
        return flops_per_token_exact(d_model, n_layers, n_heads, d_ff, vocab_size, seq_len)
    if convention == "6n":
        return flops_per_token_6n(d_model, n_layers, d_ff, vocab_size, params)
    raise ValueError(f"unknown FLOPs convention {convention!r}; use 'exact' or '6n'")
