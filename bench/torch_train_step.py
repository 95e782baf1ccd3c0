"""PyTorch CPU peer for bench/train-step.ts: the identical LLaMA-style model and AdamW step.

Prints one JSON line: {"torch_tokens_per_s", "torch_step_ms", "torch_threads", "torch_version", "blas"}.
"""
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

args = json.loads(sys.argv[1])
V, D, NL, H, FF, T, B = (args[k] for k in ("vocab", "dim", "layers", "heads", "ffn", "ctx", "batch"))
steps, warmup = args.get("steps", 5), args.get("warmup", 2)
threads = int(os.environ.get("OMP_NUM_THREADS", os.cpu_count()))
torch.set_num_threads(threads)
torch.manual_seed(0)


class RMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.weight


def rope(x, cos, sin):
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)


def attend(q, k, v):
    # Fused SDPA where this torch has it; the materialized causal softmax otherwise.
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    t = q.shape[-2]
    s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    s = s.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(s, -1) @ v


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.n1, self.n2 = RMSNorm(D), RMSNorm(D)
        self.q, self.k, self.v, self.o = (nn.Linear(D, D, bias=False) for _ in range(4))
        self.gate, self.up = nn.Linear(D, FF, bias=False), nn.Linear(D, FF, bias=False)
        self.down = nn.Linear(FF, D, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        h = self.n1(x)
        q = self.q(h).view(b, t, H, -1).transpose(1, 2)
        k = self.k(h).view(b, t, H, -1).transpose(1, 2)
        v = self.v(h).view(b, t, H, -1).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        a = attend(q, k, v)
        x = x + self.o(a.transpose(1, 2).reshape(b, t, D))
        h = self.n2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(V, D)
        self.blocks = nn.ModuleList(Block() for _ in range(NL))
        self.norm = RMSNorm(D)
        self.head = nn.Linear(D, V, bias=False)
        hd = D // H
        inv = 10000 ** (-torch.arange(0, hd, 2).float() / hd)
        ang = torch.arange(T).float()[:, None] * inv[None]
        self.register_buffer("cos", ang.cos())
        self.register_buffer("sin", ang.sin())

    def forward(self, ids):
        x = self.emb(ids)
        for blk in self.blocks:
            x = blk(x, self.cos, self.sin)
        return self.head(self.norm(x))


model = Model()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
ids = torch.randint(0, V, (B, T + 1))
times = []
for i in range(warmup + steps):
    t0 = time.perf_counter()
    logits = model(ids[:, :-1])
    loss = F.cross_entropy(logits.reshape(-1, V), ids[:, 1:].reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    if i >= warmup:
        times.append(time.perf_counter() - t0)
best = sorted(times)[len(times) // 2]
cfg = torch.__config__.show()
blas = "openblas" if "openblas" in cfg.lower() or "openblas" in os.environ.get("LD_LIBRARY_PATH", "") else "unknown"
print(json.dumps({
    "torch_tokens_per_s": B * T / best,
    "torch_step_ms": best * 1000,
    "torch_threads": threads,
    "torch_version": torch.__version__,
    "blas": blas,
}))
