"""The GPT flops-fit trains: pre-LN, no biases, rotary positions, causal SDPA, u-muP by default.

Its parameters are exactly those `flops_fit_core.flops` counts (untied embedding and readout,
Q/K/V/output, a two-matrix GELU MLP, two RMSNorm weights per layer and a final one), so the N a
result records is the N that trained.

u-muP (Blake et al. 2024, "u-μP: The Unit-Scaled Maximal Update Parametrization") starts every
op at unit scale on unit-scale inputs and lets one learning rate transfer across width and depth
(deeper in, the residual stream drifts up to about 1.6 at init, because attention averages
position-correlated values less than the op's model assumes; tests/test_model.py measures it):

* every weight is initialised N(0, 1) and every norm weight 1;
* each op carries a fixed multiplier: a hidden linear 1/sqrt(fan_in), the readout 1/fan_in,
  attention logits `attn_mult / d_head` and an output scale from unit_scaling's empirical model
  of causal attention, GELU 1/std(GELU(N(0,1))) from the same package;
* the residual stream weights branch i against the stream by tau_i (unit_scaling's
  `transformer_residual_scaling_rule`: embedding, attention and MLP contribute equally);
* Adam learning rates per parameter type (`lr_multipliers`): hidden eta fan_in^-1/2 depth^-1/2,
  embedding eta d^-1/2, norms inside the residual stack eta depth^-1/2, readout eta.

Why not the `unit-scaling` package itself (it imports fine with our torch): it gives each op
separate forward and backward scales through custom autograd functions, which costs an extra
pass over every activation. Here every multiplier is folded into its weight (a d x d multiply,
not a batch x seq x d one), and the residual weighting into the branch's output projection:
RMSNorm ignores the stream's overall scale, so x_{i+1} = (x_i + tau_i f_i) / sqrt(1 + tau_i^2)
equals s_{i+1} u_{i+1} with u_{i+1} = u_i + (tau_i / s_i) f_i and s_i the running product of
1/sqrt(1 + tau_j^2). The forward pass is u-muP's exactly; gradients differ from unit-scaled
ones by one constant per tensor, which Adam's update ignores (up to its epsilon).

`parametrization="sp"` is the standard GPT-2 recipe instead: N(0, 0.02) weights, output
projections 0.02/sqrt(2 n_layers), 1/sqrt(d_head) attention, one learning rate for all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flops_fit_core import ModelShape

__all__ = [
    "GPT",
    "ModelOptions",
    "RMSNorm",
    "ScaledLinear",
    "apply_rope",
    "attention_output_scale",
    "gelu_output_scale",
    "residual_taus",
    "rope_complex",
    "rope_real",
    "rope_table",
]

Parametrization = Literal["umup", "sp"]

SP_INIT_STD = 0.02
ROPE_BASE = 10_000.0


def _log_interpolate(alpha: float, lower: float, upper: float) -> float:
    """exp((1 - alpha) ln lower + alpha ln upper), unit_scaling's `logarithmic_interpolation`."""
    return math.exp((1 - alpha) * math.log(lower) + alpha * math.log(upper))


def gelu_output_scale(mult: float = 1.0) -> float:
    """The multiplier that gives GELU(N(0,1)) unit std (unit_scaling's empirical model).

    Its mean is not zero, so the RMS the next projection sees is 1.15, not 1.
    """
    return _log_interpolate(1 / (1 + 0.25 / mult**2), 2.0, (2 / (1 - 1 / math.pi)) ** 0.5)


def attention_output_scale(seq_len: int, d_head: int, mult: float = 1.0) -> float:
    """The multiplier that gives causal attention over unit-scale q, k, v a unit-std output.

    At init the logits are small, so attention averages the values it sees: position i
    averages i + 1 of them, and the output's variance falls like log(T) / T over a sequence.
    unit_scaling interpolates between that and 1 by how peaked `mult` makes the softmax.
    """
    lower = (math.log(seq_len) / seq_len) ** 0.5 if seq_len > 1 else 1.0
    return 1.0 / _log_interpolate(1 / (1 + 4 * d_head / mult**2), lower, 1.0)


def residual_taus(n_layers: int, residual_mult: float = 1.0, attn_ratio: float = 1.0):
    """tau of each of the 2 n_layers branches (attention, MLP, attention, ...).

    unit_scaling's `transformer_residual_scaling_rule`: every attention branch contributes the
    same share of the stream's variance, every MLP branch the same; the attention branches
    together hold `residual_mult`^2 times the embedding's share (times `attn_ratio`^2 relative
    to the MLP branches), and so do the MLP branches.
    """
    layers = 2 * n_layers
    alpha_mlp = residual_mult * (2 / (1 + attn_ratio**2)) ** 0.5
    alpha_attn = attn_ratio * alpha_mlp
    taus = []
    for index in range(layers):
        n_attn, n_mlp = (index + 1) // 2, index // 2
        alpha = alpha_attn if index % 2 == 0 else alpha_mlp
        taus.append(alpha / (layers / 2 + n_attn * alpha_attn**2 + n_mlp * alpha_mlp**2) ** 0.5)
    return taus


@dataclass(frozen=True)
class ModelOptions:
    """How the shape is parametrized: u-muP's hyperparameters, or the standard recipe."""

    parametrization: Parametrization = "umup"
    attn_mult: float = 1.0
    residual_mult: float = 1.0
    residual_attn_ratio: float = 1.0
    readout_mult: float = 1.0
    norm_eps: float = 1e-6


class RMSNorm(nn.Module):
    """x / rms(x) * weight; scale-invariant in x, which the folded residual relies on."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class ScaledLinear(nn.Module):
    """y = x (m W)^T: a bias-free linear whose fixed multiplier m is applied to the weight."""

    def __init__(self, fan_in: int, fan_out: int, multiplier: float, init_std: float):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(fan_out, fan_in).normal_(0.0, init_std))
        self.multiplier = float(multiplier)

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight if self.multiplier == 1.0 else self.weight * self.multiplier
        return F.linear(x, w)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]} -> {self.weight.shape[0]}, multiplier={self.multiplier:.4g}"


def rope_table(seq_len: int, d_head: int, base: float = ROPE_BASE) -> Tensor:
    """(cos, sin) of the angle theta_p,j of position p and frequency j: [seq_len, d_head/2, 2]
    float32, computed in float64."""
    inv_freq = 1.0 / (base ** (torch.arange(0, d_head, 2, dtype=torch.float64) / d_head))
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float64), inv_freq)
    return torch.stack((angles.cos(), angles.sin()), dim=-1).to(torch.float32)


def apply_rope(qk: Tensor, table: Tensor) -> Tensor:
    """Rotate each adjacent pair of q and k channels by its position's angle.

    `qk` is [B, T, 2, H, h] (queries and keys together, straight out of the fused projection);
    the pair (x, y) = (2j, 2j+1) becomes (x cos - y sin, x sin + y cos): one pass over the data
    forward and one backward, instead of the rotate-half form's five. Two equal ways (to 1e-6,
    tests/test_model.py): traced by `torch.compile`, real arithmetic that inductor fuses into
    the neighbouring kernels (`rope_real`); eager, one complex multiply (`rope_complex`), which
    is 2.6x faster than the real form's separate elementwise ops on a CPU.
    """
    if torch.compiler.is_compiling():
        return rope_real(qk, table)
    return rope_complex(qk, table)


def rope_real(qk: Tensor, table: Tensor) -> Tensor:
    """`apply_rope` in real arithmetic, in float32 whatever the autocast dtype."""
    b, t, two, heads, h = qk.shape
    x, y = qk.float().reshape(b, t, two, heads, h // 2, 2).unbind(-1)
    cos, sin = table[:t, None, None, :, 0], table[:t, None, None, :, 1]
    rotated = torch.stack((x * cos - y * sin, x * sin + y * cos), dim=-1)
    return rotated.reshape(b, t, two, heads, h).type_as(qk)


def rope_complex(qk: Tensor, table: Tensor) -> Tensor:
    """`apply_rope` as (x + iy) e^(i theta), the table's (cos, sin) read as complex64."""
    b, t, two, heads, h = qk.shape
    pairs = torch.view_as_complex(qk.float().reshape(b, t, two, heads, h // 2, 2))
    rotated = torch.view_as_real(pairs * torch.view_as_complex(table[:t, None, None]))
    return rotated.reshape(b, t, two, heads, h).type_as(qk)


class Attention(nn.Module):
    """Causal multi-head self-attention through `scaled_dot_product_attention`."""

    def __init__(self, shape: ModelShape, opts: ModelOptions, out_multiplier: float, std: float):
        super().__init__()
        d, self.n_heads = shape.d_model, shape.n_heads
        self.d_head = d // shape.n_heads
        umup = opts.parametrization == "umup"
        self.qkv = ScaledLinear(d, 3 * d, d**-0.5 if umup else 1.0, std)
        self.out = ScaledLinear(
            d, d, out_multiplier, std if umup else std / (2 * shape.n_layers) ** 0.5
        )
        self.softmax_scale = opts.attn_mult / self.d_head if umup else self.d_head**-0.5

    def forward(self, x: Tensor, rope: Tensor) -> Tensor:
        b, t, d = x.shape
        qkv = self.qkv(x).view(b, t, 3, self.n_heads, self.d_head)
        # split/unbind, not slicing: their backward is a cat, not a zero-fill plus an add
        qk, v = qkv.split([2, 1], dim=2)
        q, k = apply_rope(qk, rope).unbind(2)
        v = v.squeeze(2)
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            is_causal=True,
            scale=self.softmax_scale,
        )
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    """d -> d_ff -> GELU -> d, no biases."""

    def __init__(self, shape: ModelShape, opts: ModelOptions, out_multiplier: float, std: float):
        super().__init__()
        d, d_ff = shape.d_model, shape.d_ff
        umup = opts.parametrization == "umup"
        self.up = ScaledLinear(d, d_ff, d**-0.5 if umup else 1.0, std)
        self.down = ScaledLinear(
            d_ff, d, out_multiplier, std if umup else std / (2 * shape.n_layers) ** 0.5
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    """Pre-LN: u += attention(norm(u)); u += mlp(norm(u)) (branch weights folded in)."""

    def __init__(self, shape, opts, attn_out: float, mlp_out: float, std: float):
        super().__init__()
        self.attn_norm = RMSNorm(shape.d_model, opts.norm_eps)
        self.attn = Attention(shape, opts, attn_out, std)
        self.mlp_norm = RMSNorm(shape.d_model, opts.norm_eps)
        self.mlp = MLP(shape, opts, mlp_out, std)

    def forward(self, u: Tensor, rope: Tensor) -> Tensor:
        u = u + self.attn(self.attn_norm(u), rope)
        return u + self.mlp(self.mlp_norm(u))


class GPT(nn.Module):
    """A decoder-only transformer of a given `ModelShape`; `forward(idx, targets)` -> loss."""

    def __init__(self, shape: ModelShape, options: ModelOptions | None = None):
        super().__init__()
        self.shape = shape
        self.options = opts = options or ModelOptions()
        d, n_layers = shape.d_model, shape.n_layers
        if d % shape.n_heads or (d // shape.n_heads) % 2:
            raise ValueError(
                f"d_model {d} with {shape.n_heads} heads gives head size "
                f"{d / shape.n_heads:g}; rotary positions need an even integer"
            )
        umup = opts.parametrization == "umup"
        std = 1.0 if umup else SP_INIT_STD
        self.residual_scales = self._residual_scales() if umup else [1.0] * (2 * n_layers)
        attn_scale = attention_output_scale(shape.seq_len, d // shape.n_heads, opts.attn_mult)
        gelu_scale = gelu_output_scale()
        blocks = []
        for i in range(n_layers):
            if umup:
                attn_out = attn_scale * d**-0.5 * self.residual_scales[2 * i]
                mlp_out = gelu_scale * shape.d_ff**-0.5 * self.residual_scales[2 * i + 1]
            else:
                attn_out = mlp_out = 1.0
            blocks.append(Block(shape, opts, attn_out, mlp_out, std))
        self.embedding = nn.Parameter(torch.empty(shape.vocab_size, d).normal_(0.0, std))
        self.blocks = nn.ModuleList(blocks)
        self.final_norm = RMSNorm(d, opts.norm_eps)
        self.readout = ScaledLinear(
            d, shape.vocab_size, opts.readout_mult / d if umup else 1.0, std
        )
        self.register_buffer(
            "rope", rope_table(shape.seq_len, d // shape.n_heads), persistent=False
        )

    def _residual_scales(self) -> list[float]:
        """beta_i = tau_i / s_i: branch i's weight on the unnormalised stream (module doc)."""
        opts = self.options
        taus = residual_taus(self.shape.n_layers, opts.residual_mult, opts.residual_attn_ratio)
        betas, s = [], 1.0
        for tau in taus:
            betas.append(tau / s)
            s /= (1 + tau * tau) ** 0.5
        return betas

    def hidden(self, idx: Tensor) -> Tensor:
        """The normalised final hidden state, [B, T, d]."""
        u = F.embedding(idx, self.embedding)
        for block in self.blocks:
            u = block(u, self.rope)
        return self.final_norm(u)

    def forward(self, idx: Tensor, targets: Tensor | None = None) -> Tensor:
        """Mean cross-entropy (nats/token) against `targets`, or the logits without them."""
        logits = self.readout(self.hidden(idx))
        if targets is None:
            return logits
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())

    def param_types(self) -> dict[str, str]:
        """Each parameter's u-muP type: embedding, hidden, norm, final_norm or readout."""
        types = {}
        for name, p in self.named_parameters():
            if name == "embedding":
                types[name] = "embedding"
            elif name.startswith("readout"):
                types[name] = "readout"
            elif name.startswith("final_norm"):
                types[name] = "final_norm"
            elif p.ndim == 1:
                types[name] = "norm"
            else:
                types[name] = "hidden"
        return types

    def lr_multipliers(self) -> dict[str, float]:
        """Each parameter's learning rate as a multiple of the global eta (1 for all under sp).

        u-muP's Adam rules (unit_scaling `optim.lr_scale_func_adam`): hidden matrices
        fan_in^-1/2 depth^-1/2, the embedding d^-1/2 (its fan-in is taken as its width), norm
        weights inside the residual stack depth^-1/2, the final norm and the readout 1.
        """
        if self.options.parametrization != "umup":
            return {name: 1.0 for name, _ in self.named_parameters()}
        depth = self.shape.n_layers
        out = {}
        params = dict(self.named_parameters())
        for name, kind in self.param_types().items():
            if kind == "hidden":
                out[name] = params[name].shape[1] ** -0.5 * depth**-0.5
            elif kind == "embedding":
                out[name] = self.shape.d_model**-0.5
            elif kind == "norm":
                out[name] = depth**-0.5
            else:
                out[name] = 1.0
        return out

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """Optimizer groups: one per distinct (lr multiplier, decayed) pair.

        Weight decay applies to matrices only (embedding, projections, readout), never to norm
        weights.
        """
        multipliers = self.lr_multipliers()
        groups: dict[tuple[float, bool], dict] = {}
        for name, p in self.named_parameters():
            decayed = p.ndim >= 2
            key = (multipliers[name], decayed)
            group = groups.setdefault(
                key,
                {
                    "params": [],
                    "names": [],
                    "lr": lr * key[0],
                    "lr_multiplier": key[0],
                    "weight_decay": weight_decay if decayed else 0.0,
                },
            )
            group["params"].append(p)
            group["names"].append(name)
        return list(groups.values())

    def count_params(self) -> tuple[int, int]:
        """(total, non-embedding) parameters, counted from the tensors themselves."""
        total = sum(p.numel() for p in self.parameters())
        vocab = self.embedding.numel() + self.readout.weight.numel()
        return total, total - vocab
