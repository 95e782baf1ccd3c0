"""PyTorch peer of bench/gpu-decode.ts: batch-1 greedy decode of a plain LLaMA-shaped dense model
(RMSNorm, rotary attention with a KV cache, SwiGLU FFN, untied head) in bf16 on the GPU.

Usage: python3 bench/torch_decode_peer.py '<json>' with vocab, dim, layers, heads, kv_heads, ffn,
eps, theta, prompt, decode (and cpu_smoke: true to run it on the CPU in fp32 at whatever size is
given). Random weights (speed only). Prints one JSON line: tokens/s of the eager loop and, when
CUDA graphs work, of the same step replayed from a captured graph (static KV cache either way).
Timing: prefill, then `decode` greedy steps with the token kept on the device, synchronize at both
ends of the timed loop.
"""
import json
import math
import sys
import time

import torch
import torch.nn.functional as F

A = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
SMOKE = bool(A.get("cpu_smoke"))
if not SMOKE and not torch.cuda.is_available():
    raise SystemExit("CUDA is not available to this PyTorch")
DEV = torch.device("cpu" if SMOKE else "cuda")
DT = torch.float32 if SMOKE else torch.bfloat16
torch.manual_seed(0)

V, D, NL, H = A["vocab"], A["dim"], A["layers"], A["heads"]
HK = A.get("kv_heads", H)
FF, EPS, THETA = A["ffn"], A.get("eps", 1e-5), A.get("theta", 10000.0)
HD = D // H
P, NDEC = A["prompt"], A["decode"]
CAP = P + NDEC + 8


def sync():
    if DEV.type == "cuda":
        torch.cuda.synchronize()


def w(*shape):
    return (torch.randn(*shape, device=DEV, dtype=torch.float32) * 0.02).to(DT)


def attend(q, k, v, mask):
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    s = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(q.shape[-1])
    return (s.masked_fill(~mask, float("-inf")).softmax(-1) @ v.float()).to(q.dtype)


class Model:
    def __init__(self):
        self.emb = w(V, D)
        self.layers = []
        for _ in range(NL):
            self.layers.append({
                "n1": torch.ones(D, device=DEV, dtype=DT), "n2": torch.ones(D, device=DEV, dtype=DT),
                "qkv": w((H + 2 * HK) * HD, D), "o": w(D, H * HD), "gu": w(2 * FF, D), "down": w(D, FF),
                "k": torch.zeros(1, HK, CAP, HD, device=DEV, dtype=DT), "v": torch.zeros(1, HK, CAP, HD, device=DEV, dtype=DT),
            })
        self.norm = torch.ones(D, device=DEV, dtype=DT)
        self.head = w(V, D)
        inv = 1.0 / (THETA ** (torch.arange(0, HD, 2, device=DEV, dtype=torch.float32) / HD))
        ang = torch.arange(CAP, device=DEV, dtype=torch.float32)[:, None] * inv[None, :]
        self.cos, self.sin = ang.cos(), ang.sin()

    @staticmethod
    def rms(x, g):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + EPS)).to(DT) * g

    def rope(self, x, pos):  # x [1, h, L, HD]; half-split rotation
        c, s = self.cos[pos][None, None], self.sin[pos][None, None]
        x1, x2 = x[..., : HD // 2].float(), x[..., HD // 2:].float()
        return torch.cat([x1 * c - x2 * s, x1 * s + x2 * c], -1).to(DT)

    def forward(self, ids, pos):
        """ids [1, L] at positions pos [L] (a device tensor); writes the KV cache; logits of the last position."""
        L = ids.shape[1]
        x = self.emb[ids]
        for ly in self.layers:
            h = self.rms(x, ly["n1"])
            qkv = F.linear(h, ly["qkv"])
            q, k, v = qkv.split([H * HD, HK * HD, HK * HD], -1)
            q = self.rope(q.view(1, L, H, HD).transpose(1, 2), pos)
            k = self.rope(k.view(1, L, HK, HD).transpose(1, 2), pos)
            v = v.view(1, L, HK, HD).transpose(1, 2)
            ly["k"].index_copy_(2, pos, k)
            ly["v"].index_copy_(2, pos, v)
            # Attend over the whole static cache with a mask up to each query's position.
            keys = torch.arange(CAP, device=DEV)
            mask = keys[None, :] <= pos[:, None]
            kk, vv = ly["k"], ly["v"]
            if HK != H:
                kk, vv = kk.repeat_interleave(H // HK, 1), vv.repeat_interleave(H // HK, 1)
            a = attend(q, kk, vv, mask[None, None])
            x = x + F.linear(a.transpose(1, 2).reshape(1, L, H * HD), ly["o"])
            h = self.rms(x, ly["n2"])
            g, u = F.linear(h, ly["gu"]).chunk(2, -1)
            x = x + F.linear(F.silu(g) * u, ly["down"])
        return F.linear(self.rms(x[:, -1:], self.norm), self.head)  # [1, 1, V]


@torch.inference_mode()
def main():
    m = Model()
    prompt = torch.tensor([[(i * 7919 + 13) % V for i in range(P)]], device=DEV)
    res = {"torch_version": torch.__version__, "torch_device": torch.cuda.get_device_name(0) if DEV.type == "cuda" else "cpu",
           "torch_dtype": str(DT).replace("torch.", "")}
    weight_bytes = sum(t.numel() * t.element_size() for ly in m.layers for n, t in ly.items() if n in ("qkv", "o", "gu", "down"))
    weight_bytes += m.head.numel() * m.head.element_size()
    res["torch_weight_bytes_per_token"] = weight_bytes

    def eager(n):
        logits = m.forward(prompt, torch.arange(P, device=DEV))
        tok = logits.argmax(-1)
        pos = torch.tensor([P], device=DEV)
        sync()
        t = time.perf_counter()
        for _ in range(n):
            tok = m.forward(tok, pos).argmax(-1)
            pos += 1
        sync()
        return time.perf_counter() - t

    eager(2)
    s = eager(NDEC)
    res["torch_bf16_tokens_per_s"] = NDEC / s
    res["torch_weight_read_GBps"] = weight_bytes * NDEC / s / 1e9
    if DEV.type == "cuda":
        try:
            # The same step captured once into a CUDA graph (static token / position buffers): no
            # per-kernel launch cost left, the ceiling of a launch-free loop.
            tok = torch.zeros(1, 1, dtype=torch.long, device=DEV)
            pos = torch.tensor([P], device=DEV)
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):
                    m.forward(tok, pos)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = m.forward(tok, pos).argmax(-1)
            sync()
            t = time.perf_counter()
            for _ in range(NDEC):
                graph.replay()
                tok.copy_(out)
                pos += 1
            sync()
            s = time.perf_counter() - t
            res["torch_bf16_graph_tokens_per_s"] = NDEC / s
        except RuntimeError as e:
            res["torch_graph_error"] = str(e).split("\n")[0]
    print(json.dumps(res))


main()
