"""A plain PyTorch fp32 training loop of the same GPT: the baseline `local` is measured against.

Written the obvious way, nanoGPT style, with nothing tuned: `nn.Embedding`, per layer an
`nn.RMSNorm`, separate Q/K/V `nn.Linear`s, rotary positions in the common rotate-half form,
`F.scaled_dot_product_attention(is_causal=True)`, an output projection, a second `nn.RMSNorm`
and a GELU MLP; a final `nn.RMSNorm` and an untied readout. It has exactly the parameters
`flops_fit_core.flops.params_total` counts (checked on construction), so a tokens/s ratio
against `local` compares the same amount of work.

Training: GPT-2's N(0, 0.02) init, `torch.optim.AdamW` with its default implementation
(no `fused` or `foreach` flag), `clip_grad_norm_(1.0)`, `zero_grad()`, random int64 batches
generated on the device before the clock starts. No data pipeline, no schedule, no logging,
no evaluation: the floor of what one training step costs when written plainly.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flops_fit_core import ModelShape

__all__ = ["PlainGPT", "plain_tokens_per_s", "plain_train"]

INIT_STD = 0.02
NORM_EPS = 1e-6
ROPE_BASE = 10_000.0
#: Distinct random batches generated up front; longer runs cycle through them.
BATCH_POOL = 8


def _rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Rotary(nn.Module):
    """cos/sin tables of rotary positions, applied in the rotate-half form."""

    def __init__(self, d_head: int, seq_len: int, base: float = ROPE_BASE):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, d_head, 2).float() / d_head))
        freqs = torch.outer(torch.arange(seq_len).float(), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, H, T, h]."""
        t = x.shape[-2]
        return x * self.cos[:t] + _rotate_half(x) * self.sin[:t]


class CausalSelfAttention(nn.Module):
    def __init__(self, shape: ModelShape):
        super().__init__()
        d = shape.d_model
        self.n_heads = shape.n_heads
        self.d_head = d // shape.n_heads
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, d, bias=False)
        self.v = nn.Linear(d, d, bias=False)
        self.o = nn.Linear(d, d, bias=False)
        self.rotary = Rotary(self.d_head, shape.seq_len)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q = self.q(x).view(b, t, self.n_heads, self.d_head).transpose(1, 2)
        k = self.k(x).view(b, t, self.n_heads, self.d_head).transpose(1, 2)
        v = self.v(x).view(b, t, self.n_heads, self.d_head).transpose(1, 2)
        q, k = self.rotary(q), self.rotary(k)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(b, t, d)
        return self.o(y)


class MLP(nn.Module):
    def __init__(self, shape: ModelShape):
        super().__init__()
        self.up = nn.Linear(shape.d_model, shape.d_ff, bias=False)
        self.act = nn.GELU()
        self.down = nn.Linear(shape.d_ff, shape.d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(self.act(self.up(x)))


class Block(nn.Module):
    def __init__(self, shape: ModelShape):
        super().__init__()
        self.norm1 = nn.RMSNorm(shape.d_model, eps=NORM_EPS)
        self.attn = CausalSelfAttention(shape)
        self.norm2 = nn.RMSNorm(shape.d_model, eps=NORM_EPS)
        self.mlp = MLP(shape)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PlainGPT(nn.Module):
    """The shape's pre-LN GPT, written plainly; `forward(idx, targets)` -> mean cross-entropy."""

    def __init__(self, shape: ModelShape):
        super().__init__()
        if (shape.d_model // shape.n_heads) % 2:
            raise ValueError(
                f"head size {shape.d_model // shape.n_heads} is odd; rotary positions need it even"
            )
        self.shape = shape
        self.embedding = nn.Embedding(shape.vocab_size, shape.d_model)
        self.blocks = nn.ModuleList(Block(shape) for _ in range(shape.n_layers))
        self.final_norm = nn.RMSNorm(shape.d_model, eps=NORM_EPS)
        self.readout = nn.Linear(shape.d_model, shape.vocab_size, bias=False)
        self.apply(self._init_weights)
        # GPT-2: residual output projections scaled by 1/sqrt(2 n_layers).
        for name, p in self.named_parameters():
            if name.endswith(("attn.o.weight", "mlp.down.weight")):
                nn.init.normal_(p, 0.0, INIT_STD / math.sqrt(2 * shape.n_layers))
        count = sum(p.numel() for p in self.parameters())
        if count != shape.params_total:
            raise AssertionError(
                f"plain GPT has {count:,} parameters; params_total counts {shape.params_total:,}"
            )

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, 0.0, INIT_STD)

    def forward(self, idx: Tensor, targets: Tensor) -> Tensor:
        x = self.embedding(idx)
        for block in self.blocks:
            x = block(x)
        logits = self.readout(self.final_norm(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


@dataclass(frozen=True)
class PlainRun:
    """What `plain_train` measured: throughput of the timed steps and every step's loss."""

    tokens_per_s: float
    losses: list[float]
    params: int
    device: str
    threads: int


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def plain_train(
    shape: ModelShape,
    batch: int,
    steps: int,
    warmup: int = 3,
    threads: int | None = None,
    device: str | torch.device = "cpu",
    *,
    lr: float = 1e-3,
    seed: int = 0,
    distinct_batches: int = BATCH_POOL,
) -> PlainRun:
    """Train `warmup + steps` steps in fp32; tokens/s over the last `steps` of them.

    `threads` sets torch's intra-op threads for the run (restored afterwards); None keeps the
    current setting. `distinct_batches` random batches are made up front and cycled through
    (1 makes the model memorise one batch, which shows that it learns).
    """
    if steps < 1 or warmup < 0 or batch < 1 or distinct_batches < 1:
        raise ValueError("steps and batch must be >= 1, warmup >= 0, distinct_batches >= 1")
    device = torch.device(device)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        model = PlainGPT(shape).to(device)
        model.train()
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1
        )
        pool = min(distinct_batches, warmup + steps)
        data = torch.randint(
            0, shape.vocab_size, (pool, batch, shape.seq_len + 1), dtype=torch.int64, device=device
        )
        losses: list[Tensor] = []

        def step(i: int) -> None:
            x, y = data[i % pool, :, :-1], data[i % pool, :, 1:]
            loss = model(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.detach())

        for i in range(warmup):
            step(i)
        _synchronize(device)
        start = time.perf_counter()
        for i in range(warmup, warmup + steps):
            step(i)
        _synchronize(device)
        elapsed = time.perf_counter() - start
        used_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous_threads)
    return PlainRun(
        tokens_per_s=steps * batch * shape.seq_len / elapsed,
        losses=[float(v) for v in losses],
        params=sum(p.numel() for p in model.parameters()),
        device=str(device),
        threads=used_threads,
    )


def plain_tokens_per_s(
    shape: ModelShape,
    batch: int,
    steps: int,
    warmup: int = 3,
    threads: int | None = None,
    device: str | torch.device = "cpu",
) -> float:
    """Training tokens per second of the plain fp32 loop on this shape (see `plain_train`)."""
    return plain_train(shape, batch, steps, warmup, threads, device).tokens_per_s
