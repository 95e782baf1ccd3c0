"""PyTorch CUDA peer for the WebGPU benchmarks (bench/matmul.ts, attention.ts, train-step.ts).

Usage: python3 bench/torch_gpu_peer.py '<json>' where json has "mode" ("matmul" | "attention" |
"train-step" | "train-step-config": the frugal_lm_torch twin of "config", a frugal model config) and the shapes of that mode; "cpu_smoke": true runs the same code on the CPU at tiny
sizes (checks the script without a GPU). Prints one JSON line.

Every figure is measured twice: fp32 with TF32 off (the like-for-like baseline of our fp32 kernels) and
bf16 (the tensor-core ceiling). Timing: warm-up calls, then CUDA events around `reps` calls, mean per
call -- the same protocol as the TypeScript side (sync, N calls, sync).
"""
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

ARGS = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
SMOKE = bool(ARGS.get("cpu_smoke"))
if not SMOKE and not torch.cuda.is_available():
    raise SystemExit("CUDA is not available to this PyTorch")
DEV = torch.device("cpu" if SMOKE else "cuda")
DEADLINE = time.monotonic() + float(ARGS.get("budget_s", 240))
torch.manual_seed(0)


def tf32_off():
    # PyTorch >= 2.9 has the fp32_precision settings (the allow_tf32 flags are deprecated there, and
    # mixing the two APIs is refused); older versions only have the flags.
    if hasattr(torch.backends, "fp32_precision"):
        try:
            torch.backends.cuda.matmul.fp32_precision = "ieee"
            torch.backends.cudnn.fp32_precision = "ieee"
            return "fp32_precision=ieee"
        except (AttributeError, RuntimeError, ValueError):
            pass
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return "allow_tf32=False"


TF32_SETTING = tf32_off()


def sync():
    if DEV.type == "cuda":
        torch.cuda.synchronize()


def time_ms(fn, reps, warmup=2):
    """Mean milliseconds per call of fn over reps calls after warmup calls."""
    for _ in range(warmup):
        fn()
    sync()
    if DEV.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / reps
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) * 1000 / reps


def out_of_time():
    return time.monotonic() > DEADLINE


# ---------------------------------------------------------------- matmul
def bench_matmul():
    if "shapes" in ARGS:
        return bench_matmul_shapes()
    reps = int(ARGS.get("reps", 10))
    rows = []
    for n in ARGS["sizes"]:
        row = {"n": n}
        for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            if out_of_time():
                row["torch_" + name + "_skipped"] = "time budget"
                continue
            a = torch.randn(n, n, device=DEV, dtype=dt)
            b = torch.randn(n, n, device=DEV, dtype=dt)
            ms = time_ms(lambda: torch.mm(a, b), reps)
            row["torch_" + name + "_ms"] = ms
            row["torch_" + name + "_tflops"] = 2 * n ** 3 / (ms * 1e9)
            del a, b
        rows.append(row)
    return {"rows": rows, "fp32_rel_err": fp32_error()}


def bench_matmul_shapes():
    # "shapes": [[m, n, k, transA, transB], ...]: C[m, n] = op(A) op(B), a transposed operand stored as
    # its transpose (A as [k, m], B as [n, k]) and passed to torch.mm as a .t() view, the way the
    # backward products of a linear layer see them. Each shape gets at most target_ms of calls.
    reps = int(ARGS.get("reps", 10))
    target_ms = float(ARGS.get("target_ms", 200))
    rows = []
    for m, n, k, ta, tb in ARGS["shapes"]:
        row = {"m": m, "n": n, "k": k, "transA": bool(ta), "transB": bool(tb)}
        for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            if out_of_time():
                row["torch_" + name + "_skipped"] = "time budget"
                continue
            a = torch.randn(*((k, m) if ta else (m, k)), device=DEV, dtype=dt)
            b = torch.randn(*((n, k) if tb else (k, n)), device=DEV, dtype=dt)
            fn = lambda: torch.mm(a.t() if ta else a, b.t() if tb else b)
            once = time_ms(fn, 1, warmup=1)
            ms = time_ms(fn, max(1, min(reps, int(target_ms / max(once, 1e-3)))), warmup=1)
            row["torch_" + name + "_ms"] = ms
            row["torch_" + name + "_tflops"] = 2 * m * n * k / (ms * 1e9)
            del a, b
        rows.append(row)
        if DEV.type == "cuda":
            torch.cuda.empty_cache()
    return {"rows": rows, "fp32_rel_err": fp32_error()}


def fp32_error():
    # Evidence that fp32 really ran without TF32: error of a 1024^2 product against float64, relative
    # to the largest entry (about 1e-6 in fp32, about 1e-3 with TF32's 10-bit mantissa).
    a = torch.randn(1024, 1024, device=DEV, dtype=torch.float64)
    b = torch.randn(1024, 1024, device=DEV, dtype=torch.float64)
    ref = a @ b
    got = (a.float() @ b.float()).double()
    return ((got - ref).abs().max() / ref.abs().max()).item()


# ---------------------------------------------------------------- attention
def naive_causal(q, k, v):
    # Only for the CPU smoke run on a torch without SDPA: the materialized causal softmax.
    t = q.shape[-2]
    s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    s = s.masked_fill(torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    return torch.softmax(s, -1) @ v


def causal_attention(q, k, v):
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if not SMOKE:
        raise SystemExit("this PyTorch has no scaled_dot_product_attention")
    return naive_causal(q, k, v)


def attention_flops(b, h, l, d):
    # Causal forward: QK^T and PV, 2*L*L*D each per head, half of the square kept. Backward: 2.5x.
    fwd = 4 * b * h * l * l * d / 2
    return fwd, 2.5 * fwd


def bench_attention():
    B, H = int(ARGS.get("batch", 1)), int(ARGS["heads"])
    reps = int(ARGS.get("reps", 5))
    rows = []
    for D in ARGS["dims"]:
        for L in ARGS["lens"]:
            row = {"L": L, "D": D}
            fwd_flops, bwd_flops = attention_flops(B, H, L, D)
            for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
                if out_of_time():
                    row["torch_" + name + "_skipped"] = "time budget"
                    continue
                q, k, v, do = (torch.randn(B, H, L, D, device=DEV, dtype=dt) * 0.5 for _ in range(4))
                for t in (q, k, v):
                    t.requires_grad_(True)
                r = max(1, reps if L <= 4096 else reps // 2)
                fwd_ms = time_ms(lambda: causal_attention(q, k, v), r, warmup=1)

                def fwd_bwd():
                    q.grad = k.grad = v.grad = None
                    causal_attention(q, k, v).backward(do)

                total_ms = time_ms(fwd_bwd, r, warmup=1)
                row["torch_" + name + "_fwd_ms"] = fwd_ms
                row["torch_" + name + "_fwd_bwd_ms"] = total_ms
                row["torch_" + name + "_fwd_tflops"] = fwd_flops / (fwd_ms * 1e9)
                row["torch_" + name + "_fwd_bwd_tflops"] = (fwd_flops + bwd_flops) / (total_ms * 1e9)
                del q, k, v, do
                if DEV.type == "cuda":
                    torch.cuda.empty_cache()
            rows.append(row)
    return {"rows": rows, "flops_formula": "fwd = 4*B*H*L*L*D/2 (causal), bwd = 2.5*fwd"}


# ---------------------------------------------------------------- train-step
class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


def rope(x, cos, sin):
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)


class Block(nn.Module):
    def __init__(self, d, heads, ffn, eps):
        super().__init__()
        self.heads = heads
        self.n1, self.n2 = RMSNorm(d, eps), RMSNorm(d, eps)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.gate, self.up = nn.Linear(d, ffn, bias=False), nn.Linear(d, ffn, bias=False)
        self.down = nn.Linear(ffn, d, bias=False)

    def forward(self, x, cos, sin):
        b, t, d = x.shape
        h = self.n1(x)
        q = self.q(h).view(b, t, self.heads, -1).transpose(1, 2)
        k = self.k(h).view(b, t, self.heads, -1).transpose(1, 2)
        v = self.v(h).view(b, t, self.heads, -1).transpose(1, 2)
        q, k = rope(q, cos.to(q.dtype), sin.to(q.dtype)), rope(k, cos.to(k.dtype), sin.to(k.dtype))
        a = causal_attention(q, k, v)
        x = x + self.o(a.transpose(1, 2).reshape(b, t, d))
        h = self.n2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Model(nn.Module):
    """LLaMA-style: RMSNorm, half-split RoPE, causal SDPA, SwiGLU, untied head (as CausalLM)."""

    def __init__(self, c):
        super().__init__()
        d, heads, eps = c["dim"], c["heads"], 1e-5
        self.emb = nn.Embedding(c["vocab"], d)
        self.blocks = nn.ModuleList(Block(d, heads, c["ffn"], eps) for _ in range(c["layers"]))
        self.norm = RMSNorm(d, eps)
        self.head = nn.Linear(d, c["vocab"], bias=False)
        hd = d // heads
        inv = 10000.0 ** (-torch.arange(0, hd, 2).float() / hd)
        ang = torch.arange(c["ctx"]).float()[:, None] * inv[None]
        self.register_buffer("cos", ang.cos())
        self.register_buffer("sin", ang.sin())

    def forward(self, ids):
        x = self.emb(ids)
        for blk in self.blocks:
            x = blk(x, self.cos, self.sin)
        return self.head(self.norm(x))


def bench_train_step():
    c = ARGS["model"]
    steps = int(ARGS.get("steps", 5))
    B, T, V = c["batch"], c["ctx"], c["vocab"]
    out = {}
    for name in ("fp32", "bf16"):
        if out_of_time():
            out["torch_" + name + "_skipped"] = "time budget"
            continue
        torch.manual_seed(0)
        model = Model(c).to(DEV)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
        ids = torch.randint(0, V, (B, T + 1), device=DEV)
        inp, tgt = ids[:, :-1], ids[:, 1:].reshape(-1)

        def step():
            with torch.autocast(DEV.type, dtype=torch.bfloat16, enabled=(name == "bf16")):
                logits = model(inp)
                loss = F.cross_entropy(logits.reshape(-1, V).float(), tgt)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            return loss

        ms = time_ms(step, steps, warmup=2)
        out["torch_" + name + "_step_ms"] = ms
        out["torch_" + name + "_tokens_per_s"] = B * T * 1000 / ms
        out["torch_params"] = sum(p.numel() for p in model.parameters())
        del model, opt
        if DEV.type == "cuda":
            torch.cuda.empty_cache()
    return out


def bench_train_step_config():
    """One training step of the frugal_lm_torch twin of a frugal config (FBI, TTT, PEER, dense)."""
    import os
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
    from frugal_lm_torch.model import CausalLM

    config = ARGS["config"]
    steps = int(ARGS.get("steps", 5))
    B, T = int(ARGS["batch"]), int(ARGS["ctx"])
    out = {}
    for name in ("fp32", "bf16"):
        if out_of_time():
            out["torch_" + name + "_skipped"] = "time budget"
            continue
        torch.manual_seed(0)
        model = CausalLM(config).to(DEV)
        model.train()
        V = model.config["vocabSize"]
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
        ids = torch.randint(0, V, (B, T + 1), device=DEV)
        inp, tgt = ids[:, :-1], ids[:, 1:].reshape(-1)

        def step():
            with torch.autocast(DEV.type, dtype=torch.bfloat16, enabled=(name == "bf16")):
                logits = model(inp)
                loss = F.cross_entropy(logits.reshape(-1, V).float(), tgt)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            return loss

        ms = time_ms(step, steps, warmup=2)
        out["torch_" + name + "_step_ms"] = ms
        out["torch_" + name + "_tokens_per_s"] = B * T * 1000 / ms
        out["torch_params"] = sum(p.numel() for p in model.parameters())
        del model, opt
        if DEV.type == "cuda":
            torch.cuda.empty_cache()
    out["torch_model"] = "frugal_lm_torch.CausalLM"
    return out


MODES = {"matmul": bench_matmul, "attention": bench_attention, "train-step": bench_train_step,
         "train-step-config": bench_train_step_config}

if __name__ == "__main__":
    mode = ARGS.get("mode")
    if mode not in MODES:
        raise SystemExit("mode must be one of %s, got %r" % (sorted(MODES), mode))
    res = MODES[mode]()
    res["torch_version"] = torch.__version__
    res["torch_device"] = torch.cuda.get_device_name(0) if DEV.type == "cuda" else "cpu (smoke)"
    res["tf32"] = False
    res["tf32_setting"] = TF32_SETTING
    print(json.dumps(res))
