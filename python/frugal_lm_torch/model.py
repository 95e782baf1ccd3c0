"""CausalLM twin in plain PyTorch. Math and parameter names follow src/models and src/nn:
embedding -> blocks ([pre conv] -> h + mixer(norm(h)) -> h + ffn(ffn_norm(h))) -> RMSNorm -> LM head."""
import json
import math
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .safetensors_io import read_safetensors, write_safetensors


class ConfigError(ValueError):
    """A config the twin cannot build (one line naming the field)."""


DEFAULT_CONFIG = dict(
    vocabSize=256, hiddenSize=64, numLayers=2, numHeads=4, numKvHeads=4, intermediateSize=160,
    maxPositions=2048, rmsNormEps=1e-5, ropeTheta=10000, ropeStyle='half', tieEmbeddings=False,
    linear='dense', fbiScale='column', mixer='attention', ffn='swiglu',
)
DEFAULT_TTT = dict(backbone='mamba', miniBatch=16, baseLr=1.0, convKernel=4)
DEFAULT_PEER = dict(numExperts=1024 * 1024, heads=8, topk=16, dimKey=128, queryNorm='batchnorm', sharedKeys=True,
                    activation='gelu', score='softmax')


def resolve_config(partial):
    """Fills defaults and checks the fields the twin needs, like resolveConfig in src/models/config.ts."""
    if not isinstance(partial, dict):
        raise ConfigError('config: the "frugal" block must be an object')
    known = set(DEFAULT_CONFIG) | {'ttt', 'peer', 'bosTokenId', 'eosTokenId'}
    for k in partial:
        if k not in known:
            raise ConfigError(f"config: field '{k}' is not supported by the PyTorch twin")
    cfg = {**DEFAULT_CONFIG, **partial}
    if 'numKvHeads' not in partial:
        cfg['numKvHeads'] = cfg['numHeads']
    for k in ('vocabSize', 'hiddenSize', 'numLayers', 'numHeads', 'numKvHeads', 'intermediateSize', 'maxPositions'):
        v = cfg[k]
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ConfigError(f"config: '{k}' must be a positive integer, got {json.dumps(v)}")
    if cfg['hiddenSize'] % cfg['numHeads'] or cfg['numHeads'] % cfg['numKvHeads'] or (cfg['hiddenSize'] // cfg['numHeads']) % 2:
        raise ConfigError(f"config: hiddenSize {cfg['hiddenSize']}, numHeads {cfg['numHeads']}, numKvHeads {cfg['numKvHeads']} do not divide (head dim must be even)")

    def one_of(k, v, allowed):
        if v not in allowed:
            raise ConfigError(f"config: '{k}' must be one of {' | '.join(allowed)}, got {json.dumps(v)}")
    one_of('linear', cfg['linear'], ['dense', 'fbi'])
    one_of('fbiScale', cfg['fbiScale'], ['column', 'row', 'single'])
    one_of('mixer', cfg['mixer'], ['attention', 'ttt-linear', 'ttt-mlp'])
    one_of('ropeStyle', cfg['ropeStyle'], ['half', 'interleaved'])
    ffns = cfg['ffn'] if isinstance(cfg['ffn'], list) else [cfg['ffn']]
    if isinstance(cfg['ffn'], list) and len(cfg['ffn']) != cfg['numLayers']:
        raise ConfigError(f"config: 'ffn' lists {len(cfg['ffn'])} layers but numLayers is {cfg['numLayers']}")
    for f in ffns:
        one_of('ffn', f, ['swiglu', 'peer'])
    if cfg['mixer'] != 'attention':
        cfg['ttt'] = {**DEFAULT_TTT, **({'baseLr': 0.1} if cfg['mixer'] == 'ttt-mlp' else {}), **(cfg.get('ttt') or {})}
        one_of('ttt.backbone', cfg['ttt']['backbone'], ['transformer', 'mamba'])
    if 'peer' in ffns:
        p = cfg['peer'] = {**DEFAULT_PEER, **(cfg.get('peer') or {})}
        n = round(math.sqrt(p['numExperts']))
        if n * n != p['numExperts']:
            raise ConfigError(f"config: peer.numExperts {p['numExperts']} must be a perfect square")
        if p['topk'] > n:
            raise ConfigError(f"config: peer.topk {p['topk']} exceeds sqrt(numExperts) {n}")
        if p['dimKey'] % 2:
            raise ConfigError(f"config: peer.dimKey {p['dimKey']} must be even")
        one_of('peer.queryNorm', p['queryNorm'], ['batchnorm', 'none'])
        one_of('peer.activation', p['activation'], ['gelu', 'relu'])
        one_of('peer.score', p['score'], ['softmax', 'sigmoid'])
    if not cfg['rmsNormEps'] > 0:
        raise ConfigError("config: 'rmsNormEps' must be > 0")
    return cfg


def ffn_kind_at(cfg, i):
    return cfg['ffn'][i] if isinstance(cfg['ffn'], list) else cfg['ffn']


# ---------------------------------------------------------------------------------------------- layers

class Linear(nn.Module):
    """Dense linear, HF [out, in] layout."""

    def __init__(self, i, o, bias=False, std=0.02):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(o, i) * std)
        self.bias = nn.Parameter(torch.zeros(o)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


def _scale_shape(pattern, o, i):
    return {'column': (1, i), 'row': (o, 1), 'single': (1, 1)}[pattern]


class FbiLinear(nn.Module):
    """FBI-LLM BinaryLinearWscales: w = wscale * sign(W) + wbias, straight-through (identity) for sign."""

    def __init__(self, i, o, pattern='column', std=0.02):
        super().__init__()
        w = torch.randn(o, i) * std
        shape = _scale_shape(pattern, o, i)
        dims = [d for d, s in enumerate(shape) if s == 1]
        beta = w.mean(dim=dims, keepdim=True)
        alpha = (w - beta).abs().mean(dim=dims, keepdim=True)
        self.weight = nn.Parameter(w)
        self.wscale = nn.Parameter(alpha.reshape(shape).clone())
        self.wbias = nn.Parameter(beta.reshape(shape).clone())

    def binarized(self):
        w = self.weight
        s = w + (torch.sign(w) - w).detach()
        return self.wscale * s + self.wbias

    def forward(self, x):
        return F.linear(x, self.binarized())


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope(x, pos, theta, interleaved):
    """x [B, L, H, D], pos [L]: 'half' rotates (i, i + D/2), 'interleaved' pairs (2i, 2i+1)."""
    d = x.shape[-1]
    inv = theta ** (-torch.arange(0, d // 2, dtype=torch.float64, device=x.device) * 2 / d)
    ang = pos.to(torch.float64)[:, None] * inv[None, :]
    cos = torch.cos(ang).to(x.dtype)[None, :, None, :]
    sin = torch.sin(ang).to(x.dtype)[None, :, None, :]
    if interleaved:
        a, b = x[..., 0::2], x[..., 1::2]
        return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)
    a, b = x[..., : d // 2], x[..., d // 2:]
    return torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1)


class SelfAttention(nn.Module):
    def __init__(self, cfg, make_linear):
        super().__init__()
        c, h, hkv = cfg['hiddenSize'], cfg['numHeads'], cfg['numKvHeads']
        self.h, self.hkv, self.d = h, hkv, c // h
        self.theta, self.interleaved = cfg['ropeTheta'], cfg['ropeStyle'] == 'interleaved'
        self.q_proj = make_linear(c, c)
        self.k_proj = make_linear(c, hkv * self.d)
        self.v_proj = make_linear(c, hkv * self.d)
        self.o_proj = make_linear(c, c)

    def forward(self, x):
        b, l, _ = x.shape
        pos = torch.arange(l, device=x.device)
        q = rope(self.q_proj(x).view(b, l, self.h, self.d), pos, self.theta, self.interleaved)
        k = rope(self.k_proj(x).view(b, l, self.hkv, self.d), pos, self.theta, self.interleaved)
        v = self.v_proj(x).view(b, l, self.hkv, self.d)
        rep = self.h // self.hkv
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        if rep > 1:
            k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(self.d)
        mask = torch.ones(l, l, dtype=torch.bool, device=x.device).tril()
        a = torch.softmax(s.masked_fill(~mask, float('-inf')), -1) @ v
        return self.o_proj(a.transpose(1, 2).reshape(b, l, self.h * self.d))


class SwiGLU(nn.Module):
    def __init__(self, dim, hidden, make_linear):
        super().__init__()
        self.gate_proj = make_linear(dim, hidden)
        self.up_proj = make_linear(dim, hidden)
        self.down_proj = make_linear(hidden, dim)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


# ------------------------------------------------------------------------------------------------- TTT

class CausalDepthwiseConv(nn.Module):
    """nn.Conv1d(C, C, K, groups=C, padding=K-1)[..., :L] on [B, L, C], weight [C, 1, K]."""

    def __init__(self, c, k):
        super().__init__()
        bound = 1 / math.sqrt(k)
        self.k = k
        self.weight = nn.Parameter(torch.empty(c, 1, k).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(c).uniform_(-bound, bound))

    def forward(self, x):
        l = x.shape[1]
        y = F.conv1d(x.transpose(1, 2), self.weight, self.bias, padding=self.k - 1, groups=x.shape[2])
        return y[..., :l].transpose(1, 2)


class TttPreConv(nn.Module):
    def __init__(self, c, k, eps):
        super().__init__()
        self.norm = RMSNorm(c, eps)
        self.conv = CausalDepthwiseConv(c, k)

    def forward(self, h):
        return self.conv(self.norm(h))


_GB_C, _GB_C3 = 0.79788456, 0.1070322243


def _inner_gelu_grad(x):
    th = torch.tanh(_GB_C * x * (1 + 0.044715 * x * x))
    return 0.5 * x * ((1 - th * th) * (_GB_C + _GB_C3 * x * x)) + 0.5 * (1 + th)


def _ln(z, gam, bet, eps=1e-6):
    mu = z.mean(-1, keepdim=True)
    std = torch.sqrt((z - mu).pow(2).mean(-1, keepdim=True) + eps)
    return gam * ((z - mu) / std) + bet


def _ln_l2_grad(z, tgt, gam, bet, eps=1e-6):
    """d/dz of 1/2 ||LN(z) - tgt||^2 (closed form, differentiable again by autograd)."""
    d = z.shape[-1]
    mu = z.mean(-1, keepdim=True)
    std = torch.sqrt((z - mu).pow(2).mean(-1, keepdim=True) + eps)
    xh = (z - mu) / std
    gx = (gam * xh + bet - tgt) * gam
    return (gx - gx.sum(-1, keepdim=True) / d - xh * (gx * xh).sum(-1, keepdim=True) / d) / std


def ttt_scan(kind, xq, xk, xv, lr, te, w1, b1, w2, b2, gam, bet, k):
    """Mini-batch dual form. xq/xk/xv [B, nh, L, f]; lr [B, nh, L]; te [K]; weights [nh, ...];
    gam/bet [nh, f]. Returns [B, L, nh*f] = XQ + LN(f_inner(XQ)) per head."""
    bsz, nh, L, f = xq.shape
    gam, bet = gam[None, :, None, :], bet[None, :, None, :]
    W1 = w1[None].expand(bsz, -1, -1, -1)
    B1 = b1.reshape(1, nh, 1, -1).expand(bsz, -1, -1, -1)
    mlp = kind == 'mlp'
    if mlp:
        W2 = w2[None].expand(bsz, -1, -1, -1)
        B2 = b2.reshape(1, nh, 1, -1).expand(bsz, -1, -1, -1)
    outs = []
    for t0 in range(0, L, k):
        n = min(k, L - t0)
        q, kk, v = xq[:, :, t0:t0 + n], xk[:, :, t0:t0 + n], xv[:, :, t0:t0 + n]
        eta_s = lr[:, :, t0:t0 + n]  # [B, nh, n]
        eta_t = te[:n]
        tgt = v - kk
        tri = torch.ones(n, n, dtype=torch.bool, device=xq.device).tril()
        coef = (eta_t[:, None] * eta_s[..., None, :]).masked_fill(~tri, 0)  # [B, nh, n(t), n(s)]
        if not mlp:
            Z = kk @ W1 + B1
            G = _ln_l2_grad(Z, tgt, gam, bet)
            M = coef * (q @ kk.transpose(-1, -2) + 1)
            Zb = q @ W1 + B1 - M @ G
            if n == k:
                tl = te[k - 1]
                W1 = W1 - tl * (eta_s[..., None] * kk).transpose(-1, -2) @ G
                B1 = B1 - tl * (eta_s[..., None] * G).sum(-2, keepdim=True)
        else:
            Z1 = kk @ W1 + B1
            X2 = F.gelu(Z1, approximate='tanh')
            Z2 = X2 @ W2 + B2
            G2 = _ln_l2_grad(Z2, tgt, gam, bet)
            G1 = (G2 @ W2.transpose(-1, -2)) * _inner_gelu_grad(Z1)
            Zb1 = q @ W1 + B1 - (coef * (q @ kk.transpose(-1, -2) + 1)) @ G1
            P2 = F.gelu(Zb1, approximate='tanh')
            Zb = P2 @ W2 + B2 - (coef * (P2 @ X2.transpose(-1, -2) + 1)) @ G2
            if n == k:
                tl = te[k - 1]
                W1 = W1 - tl * (eta_s[..., None] * kk).transpose(-1, -2) @ G1
                B1 = B1 - tl * (eta_s[..., None] * G1).sum(-2, keepdim=True)
                W2 = W2 - tl * (eta_s[..., None] * X2).transpose(-1, -2) @ G2
                B2 = B2 - tl * (eta_s[..., None] * G2).sum(-2, keepdim=True)
        outs.append(q + _ln(Zb, gam, bet))
    y = torch.cat(outs, 2)  # [B, nh, L, f]
    return y.transpose(1, 2).reshape(bsz, L, nh * f)


class TttLayer(nn.Module):
    def __init__(self, cfg, kind, make_linear):
        super().__init__()
        t = cfg['ttt']
        c, nh, k = cfg['hiddenSize'], cfg['numHeads'], t['miniBatch']
        f = c // nh
        self.kind, self.nh, self.f, self.k = kind, nh, f, k
        self.base_lr, self.theta = t['baseLr'], cfg['ropeTheta']
        mamba = t['backbone'] == 'mamba'
        self.q_proj = make_linear(c, c)
        if not mamba:
            self.k_proj = make_linear(c, c)
        self.v_proj = make_linear(c, c)
        self.o_proj = make_linear(c, c)
        if mamba:
            self.conv_q = CausalDepthwiseConv(c, t['convKernel'])
            self.conv_k = CausalDepthwiseConv(c, t['convKernel'])
        self.register_buffer('token_idx', 1.0 / torch.arange(1, k + 1, dtype=torch.float32))
        self.learnable_token_idx = nn.Parameter(torch.zeros(k))
        self.learnable_ttt_lr_weight = nn.Parameter(torch.randn(nh, 1, c) * 0.02)
        self.learnable_ttt_lr_bias = nn.Parameter(torch.zeros(nh, 1))
        self.ttt_norm_weight = nn.Parameter(torch.ones(nh, f))
        self.ttt_norm_bias = nn.Parameter(torch.zeros(nh, f))
        if mamba:
            self.g_proj = make_linear(c, c)
        self.post_norm = nn.LayerNorm(c, eps=1e-6)
        h = 4 * f if kind == 'mlp' else f
        self.W1 = nn.Parameter(torch.randn(nh, f, h) * 0.02)
        self.b1 = nn.Parameter(torch.zeros(nh, 1, h))
        if kind == 'mlp':
            self.W2 = nn.Parameter(torch.randn(nh, h, f) * 0.02)
            self.b2 = nn.Parameter(torch.zeros(nh, 1, f))
        self.mamba = mamba

    def forward(self, x):
        b, l, c = x.shape
        nh, f, k = self.nh, self.f, self.k
        if self.mamba:
            xqk = self.q_proj(x)
            xq, xk = self.conv_q(xqk), self.conv_k(xqk)
        else:
            xq, xk = self.q_proj(x), self.k_proj(x)
        pos = torch.arange(l, device=x.device) % k
        XQ = rope(xq.view(b, l, nh, f), pos, self.theta, True).transpose(1, 2)
        XK = rope(xk.view(b, l, nh, f), pos, self.theta, True).transpose(1, 2)
        XV = self.v_proj(x).view(b, l, nh, f).transpose(1, 2)
        z = x.reshape(b * l, c) @ self.learnable_ttt_lr_weight.reshape(nh, c).t() + self.learnable_ttt_lr_bias.reshape(nh)
        lr = (torch.sigmoid(z) * (self.base_lr / f)).reshape(b, l, nh).transpose(1, 2)
        te = torch.clamp(self.token_idx + self.learnable_token_idx, min=0)
        y = ttt_scan(self.kind, XQ, XK, XV, lr, te, self.W1, self.b1, getattr(self, 'W2', None), getattr(self, 'b2', None),
                     self.ttt_norm_weight, self.ttt_norm_bias, k)
        y = self.post_norm(y)
        if self.mamba:
            y = F.gelu(self.g_proj(x), approximate='tanh') * y
        return self.o_proj(y)


# ------------------------------------------------------------------------------------------------ PEER

class _Table(nn.Module):
    def __init__(self, n, c, std=0.02):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, c) * std)


class PEER(nn.Module):
    """Product-key retrieval of top-k of N = n^2 single-neuron experts per head (src/nn/peer.ts)."""

    def __init__(self, dim, o):
        super().__init__()
        self.dim, self.o = dim, o
        H, dk, N = o['heads'], o['dimKey'], o['numExperts']
        self.n = round(math.sqrt(N))
        dh = dk // 2
        self.shared = o['sharedKeys']
        if self.shared:
            self.query = Linear(dim, H * dk, bias=True)
            self.sub_keys = nn.Parameter(torch.randn(2, self.n, dh) / math.sqrt(dh))
        else:
            self.to_queries = nn.Sequential(Linear(dim, H * dk, bias=False))
            self.keys = nn.Parameter(torch.randn(H, self.n, 2, dh) * 0.02)
        if o['queryNorm'] == 'batchnorm':
            self.query_bn = nn.BatchNorm1d(H * dk, eps=1e-5, momentum=0.1)
        if self.shared:
            self.down, self.up = _Table(N, dim), _Table(N, dim)
        else:
            self.weight_down_embed, self.weight_up_embed = _Table(N, dim), _Table(N, dim)

    def retrieve(self, x2):
        o = self.o
        H, dk, topk, n = o['heads'], o['dimKey'], o['topk'], self.n
        dh = dk // 2
        T = x2.shape[0]
        q = self.query(x2) if self.shared else self.to_queries(x2)
        if hasattr(self, 'query_bn'):
            q = self.query_bn(q)
        if self.shared:
            q4 = q.view(T, H, 2, dh)
            keys = self.sub_keys.view(1, 2, n, dh)
        else:
            q4 = q.view(T, 2, H, dh).permute(0, 2, 1, 3)
            keys = self.keys.permute(0, 2, 1, 3)  # [H, 2, n, dh]
        s0 = torch.einsum('thd,hnd->thn', q4[:, :, 0], keys[:, 0].expand(H, n, dh))
        s1 = torch.einsum('thd,hnd->thn', q4[:, :, 1], keys[:, 1].expand(H, n, dh))
        v0, i0 = s0.topk(topk, -1)
        v1, i1 = s1.topk(topk, -1)
        cand = v0[..., :, None] + v1[..., None, :]  # [T, H, k, k]
        best, flat = cand.reshape(T, H, topk * topk).topk(topk, -1)
        a, b = flat // topk, flat % topk
        ii, jj = i0.gather(-1, a), i1.gather(-1, b)
        indices = ii * n + jj
        scores = s0.gather(-1, ii) + s1.gather(-1, jj)
        return indices, scores

    def forward(self, x):
        shape = x.shape
        x2 = x.reshape(-1, self.dim)
        indices, scores = self.retrieve(x2)
        down = (self.down if self.shared else self.weight_down_embed).weight
        up = (self.up if self.shared else self.weight_up_embed).weight
        g = torch.softmax(scores, -1) if self.o['score'] == 'softmax' else torch.sigmoid(scores)
        u, v = down[indices], up[indices]  # [T, H, k, C]
        s = (u * x2[:, None, None, :]).sum(-1)
        a = F.gelu(s) if self.o['activation'] == 'gelu' else F.relu(s)
        y = ((g * a)[..., None] * v).sum((1, 2))
        return y.reshape(shape)


# ----------------------------------------------------------------------------------------------- model

class Block(nn.Module):
    def __init__(self, cfg, layer, make_linear):
        super().__init__()
        eps = cfg['rmsNormEps']
        c = cfg['hiddenSize']
        if cfg['mixer'] == 'attention':
            self.names = ('input_layernorm', 'self_attn', 'post_attention_layernorm')
            mixer = SelfAttention(cfg, make_linear)
        else:
            self.names = ('seq_norm', 'seq_modeling_block', 'ffn_norm')
            mixer = TttLayer(cfg, 'mlp' if cfg['mixer'] == 'ttt-mlp' else 'linear', make_linear)
            if cfg['ttt']['backbone'] == 'mamba':
                self.conv = TttPreConv(c, cfg['ttt']['convKernel'], eps)
        self.add_module(self.names[0], RMSNorm(c, eps))
        self.add_module(self.names[1], mixer)
        self.add_module(self.names[2], RMSNorm(c, eps))
        if ffn_kind_at(cfg, layer) == 'peer':
            self.mlp = PEER(c, cfg['peer'])
        else:
            self.mlp = SwiGLU(c, cfg['intermediateSize'], make_linear)

    def forward(self, h):
        if hasattr(self, 'conv'):
            h = h + self.conv(h)
        norm, mixer, ffn_norm = (getattr(self, n) for n in self.names)
        h = h + mixer(norm(h))
        return h + self.mlp(ffn_norm(h))


class Backbone(nn.Module):
    def __init__(self, cfg, make_linear):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg['vocabSize'], cfg['hiddenSize'])
        nn.init.normal_(self.embed_tokens.weight, std=0.02)
        self.layers = nn.ModuleList(Block(cfg, i, make_linear) for i in range(cfg['numLayers']))
        self.norm = RMSNorm(cfg['hiddenSize'], cfg['rmsNormEps'])


class CausalLM(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = resolve_config(config)
        cfg = self.config
        if cfg['linear'] == 'fbi':
            def make_linear(i, o):
                return FbiLinear(i, o, cfg['fbiScale'])
        else:
            def make_linear(i, o):
                return Linear(i, o)
        self.model = Backbone(cfg, make_linear)
        if not cfg['tieEmbeddings']:
            self.lm_head = Linear(cfg['hiddenSize'], cfg['vocabSize'])

    def forward(self, ids):
        h = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            h = layer(h)
        h = self.model.norm(h)
        if hasattr(self, 'lm_head'):
            return self.lm_head(h)
        return h @ self.model.embed_tokens.weight.t()

    def loss(self, inputs, targets):
        logits = self.forward(inputs)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    # -- checkpoint I/O (same names and layouts as frugal's model.safetensors)
    def tensors(self):
        out = {}
        for name, t in list(self.named_parameters()) + list(self.named_buffers()):
            a = t.detach().cpu()
            if name.endswith('num_batches_tracked'):
                out[name] = a.to(torch.int32).numpy().reshape(())
            else:
                out[name] = a.to(torch.float32).numpy()
        return out

    def load_tensors(self, tensors, source='model.safetensors'):
        own = dict(self.named_parameters())
        own.update(dict(self.named_buffers()))
        missing = [n for n in own if n not in tensors]
        extra = [n for n in tensors if n not in own]
        if missing or extra:
            raise ValueError(f'{source}: tensors do not match the config (missing {missing[:3]}, unexpected {extra[:3]})')
        with torch.no_grad():
            for n, t in own.items():
                a = torch.from_numpy(np.asarray(tensors[n]))
                if tuple(a.shape) != tuple(t.shape):
                    raise ValueError(f"{source}: shape mismatch for '{n}': model expects {list(t.shape)}, file has {list(a.shape)}")
                t.copy_(a.to(t.dtype))


def read_config(folder):
    path = os.path.join(folder, 'config.json')
    with open(path) as fh:
        js = json.load(fh)
    if 'frugal' not in js:
        raise ConfigError(f'{path}: no "frugal" block (write the checkpoint with frugal first)')
    return js['frugal']


def load_pretrained(folder, dtype=torch.float32):
    model = CausalLM(read_config(folder)).to(dtype)
    tensors, _ = read_safetensors(os.path.join(folder, 'model.safetensors'))
    model.load_tensors(tensors, os.path.join(folder, 'model.safetensors'))
    return model


def save_pretrained(model, folder, hf_config=None):
    """Writes config.json (hf_config, with the frugal block) and model.safetensors."""
    os.makedirs(folder, exist_ok=True)
    js = dict(hf_config or {})
    js['frugal'] = model.config
    tmp = os.path.join(folder, 'model.safetensors.tmp')
    write_safetensors(tmp, model.tensors(), {'format': 'pt'})
    os.replace(tmp, os.path.join(folder, 'model.safetensors'))
    with open(os.path.join(folder, 'config.json'), 'w') as fh:
        json.dump(js, fh, indent=2)
        fh.write('\n')
