"""Distributed trainer for the twin, launched by `frugal train --engine torch` through torchrun:
DDP by default (gloo on CPU, nccl on CUDA), FSDP with --fsdp. Same schedule (linear warmup, cosine
to min lr), AdamW (0.9, 0.95, eps 1e-8, no decay on 1-D tensors and biases), global-norm clipping,
checkpoint folder (config.json + model.safetensors + tokenizer.json + trainer_state.json) and
metrics.jsonl records as the native trainer."""
import argparse
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.distributed as dist

from .model import ConfigError, load_pretrained, save_pretrained
from .shards import ShardError, read_shard


def lr_at(step, lr, min_lr, warmup, steps):
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    decay = max(1, steps - warmup)
    t = min(1.0, max(0.0, (step - warmup) / decay))
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * t))


class Batches:
    """Packed sequences (sequence i = tokens[i*ctx : i*ctx + ctx + 1]) in a seeded order per epoch;
    every rank walks the same order and takes its slice of each global batch."""

    def __init__(self, tokens, ctx, batch, seed, rank, world):
        self.tokens, self.ctx, self.batch, self.seed = tokens, ctx, batch, seed
        self.n = (len(tokens) - 1) // ctx
        if self.n < 1:
            raise ShardError(f'the training shard has {len(tokens)} tokens but one sequence needs ctx + 1 = {ctx + 1}')
        self.rank, self.world = rank, world
        self.epoch, self.pos, self.order = 0, 0, self._order(0)

    def _order(self, epoch):
        return np.random.RandomState(self.seed + epoch).permutation(self.n)

    def next(self):
        ids = []
        for _ in range(self.batch):
            if self.pos >= self.n:
                self.epoch += 1
                self.pos, self.order = 0, self._order(self.epoch)
            ids.append(self.order[self.pos])
            self.pos += 1
        per = self.batch // self.world
        mine = ids[self.rank * per:(self.rank + 1) * per]
        seqs = np.stack([self.tokens[i * self.ctx:i * self.ctx + self.ctx + 1] for i in mine]).astype(np.int64)
        return torch.from_numpy(seqs[:, :-1]), torch.from_numpy(seqs[:, 1:])


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument('--init', required=True, help='checkpoint folder with the initial weights')
    ap.add_argument('--train', required=True)
    ap.add_argument('--val')
    ap.add_argument('--out', required=True)
    ap.add_argument('--steps', type=int, required=True)
    ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--ctx', type=int, default=128)
    ap.add_argument('--lr', type=float, default=3e-3)
    ap.add_argument('--min-lr', type=float)
    ap.add_argument('--warmup', type=int)
    ap.add_argument('--clip', type=float, default=1.0)
    ap.add_argument('--accum', type=int, default=1)
    ap.add_argument('--weight-decay', type=float, default=0.1)
    ap.add_argument('--eval-every', type=int, default=0)
    ap.add_argument('--eval-sequences', type=int, default=64)
    ap.add_argument('--save-every', type=int, default=0)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--fsdp', action='store_true')
    ap.add_argument('--threads', type=int, default=1)
    a = ap.parse_args(argv)

    cuda = torch.cuda.is_available()
    dist.init_process_group('nccl' if cuda else 'gloo')
    rank, world = dist.get_rank(), dist.get_world_size()
    local = int(os.environ.get('LOCAL_RANK', '0'))
    device = torch.device('cuda', local) if cuda else torch.device('cpu')
    if cuda:
        torch.cuda.set_device(device)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    def fail(msg):
        if rank == 0:
            print(f'frugal: {msg}', file=sys.stderr)
        dist.destroy_process_group()
        return 2

    if a.batch % world:
        return fail(f'--batch {a.batch} is not divisible by --nproc {world}')
    try:
        model = load_pretrained(a.init).to(device)
        tokens, vocab, tok_id = read_shard(a.train)
        val = read_shard(a.val)[0] if a.val else None
    except (ConfigError, ShardError, ValueError) as e:
        return fail(str(e))
    if vocab > model.config['vocabSize']:
        return fail(f"{a.train}: written for a vocabulary of {vocab} but the model has {model.config['vocabSize']} entries")
    cfg = model.config
    names = [n for n, _ in model.named_parameters()]
    no_decay = {n for n, p in model.named_parameters() if p.dim() < 2 or n.endswith('bias')}
    if a.fsdp:
        try:
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        except Exception as e:  # e.g. Debian's PyTorch 1.13 on Python 3.11 fails to import it
            return fail(f'--fsdp: this PyTorch build cannot load FSDP ({type(e).__name__}: {str(e)[:120]}); use DDP (drop --fsdp) or PyTorch >= 2.0')
        net = FSDP(model, use_orig_params=True)
    else:
        net = torch.nn.parallel.DistributedDataParallel(model)
    params = dict(net.named_parameters())

    def strip(n):
        for p in ('module.', '_fsdp_wrapped_module.'):
            n = n.replace(p, '')
        return n
    groups = [
        {'params': [p for n, p in params.items() if strip(n) not in no_decay], 'weight_decay': a.weight_decay},
        {'params': [p for n, p in params.items() if strip(n) in no_decay], 'weight_decay': 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    min_lr = a.min_lr if a.min_lr is not None else a.lr / 10
    warmup = a.warmup if a.warmup is not None else min(100, a.steps // 10)
    data = Batches(tokens, a.ctx, a.batch, a.seed, rank, world)

    os.makedirs(a.out, exist_ok=True)
    log = open(os.path.join(a.out, 'metrics.jsonl'), 'w') if rank == 0 else None
    total_tokens = 0
    t_start = time.perf_counter()

    def validate(step):
        net.eval()
        n = min(a.eval_sequences, (len(val) - 1) // a.ctx)
        tot, cnt = 0.0, 0
        with torch.no_grad():
            for s in range(0, n, a.batch):
                ids = range(s, min(n, s + a.batch))
                seqs = torch.from_numpy(np.stack([val[i * a.ctx:i * a.ctx + a.ctx + 1] for i in ids]).astype(np.int64)).to(device)
                logits = net(seqs[:, :-1])
                l = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), seqs[:, 1:].reshape(-1))
                tot += l.item() * seqs[:, 1:].numel()
                cnt += seqs[:, 1:].numel()
        net.train()
        loss = tot / max(cnt, 1)
        return {'type': 'eval', 'step': step, 'val_loss': loss, 'val_ppl': math.exp(loss)}

    def save(step):
        if a.fsdp:
            from torch.distributed.fsdp import FullStateDictConfig, StateDictType, FullyShardedDataParallel as FSDP
            with FSDP.state_dict_type(net, StateDictType.FULL_STATE_DICT, FullStateDictConfig(offload_to_cpu=True, rank0_only=True)):
                sd = net.state_dict()
        else:
            sd = None
        if rank != 0:
            return
        if sd is not None:
            model.load_state_dict({strip(k): v for k, v in sd.items()})
        dst = os.path.join(a.out, 'model')
        tmp = dst + '.tmp'
        shutil.rmtree(tmp, ignore_errors=True)
        with open(os.path.join(a.init, 'config.json')) as fh:
            hf = json.load(fh)
        save_pretrained(model, tmp, hf)
        if os.path.exists(os.path.join(a.init, 'tokenizer.json')):
            shutil.copy(os.path.join(a.init, 'tokenizer.json'), os.path.join(tmp, 'tokenizer.json'))
        state = {'step': step, 'totalSteps': a.steps, 'rng': [], 'tokens': total_tokens, 'tokenizerId': tok_id,
                 'extra': {'engine': 'torch', 'world': world, 'fsdp': a.fsdp}}
        with open(os.path.join(tmp, 'trainer_state.json'), 'w') as fh:
            json.dump(state, fh, indent=2)
        old = dst + '.old'
        shutil.rmtree(old, ignore_errors=True)
        if os.path.exists(dst):
            os.replace(dst, old)
        os.replace(tmp, dst)
        shutil.rmtree(old, ignore_errors=True)

    net.train()
    for step in range(a.steps):
        ts = time.perf_counter()
        cur = lr_at(step, a.lr, min_lr, warmup, a.steps)
        for g in opt.param_groups:
            g['lr'] = cur
        loss_sum = 0.0
        for _ in range(a.accum):
            x, y = data.next()
            x, y = x.to(device), y.to(device)
            logits = net(x)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            loss.backward()
            lt = loss.detach().clone()
            dist.all_reduce(lt)
            loss_sum += lt.item() / world
        # DDP averages gradients over ranks, so they equal the native gradient of the global batch.
        sq = torch.zeros((), device=device, dtype=torch.float64)
        for p in params.values():
            if p.grad is not None:
                sq += p.grad.detach().double().pow(2).sum()
        if a.fsdp:
            dist.all_reduce(sq)
        norm = math.sqrt(sq.item()) / a.accum
        if not (math.isfinite(norm) and math.isfinite(loss_sum)):
            return fail(f'training diverged at step {step + 1} (loss {loss_sum / a.accum}, grad norm {norm})')
        factor = (a.clip / (norm + 1e-6) if a.clip > 0 and norm > a.clip else 1.0) / a.accum
        for p in params.values():
            if p.grad is not None:
                p.grad.mul_(factor)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step_tokens = a.batch * a.ctx * a.accum
        total_tokens += step_tokens
        dt = time.perf_counter() - ts
        rec = {'type': 'step', 'step': step + 1, 'loss': loss_sum / a.accum, 'lr': cur, 'grad_norm': norm,
               'tokens_per_s': step_tokens / dt, 'tokens': total_tokens}
        if log:
            log.write(json.dumps(rec) + '\n')
            log.flush()
        if val is not None and ((a.eval_every and (step + 1) % a.eval_every == 0) or step + 1 == a.steps):
            ev = validate(step + 1)
            if log:
                log.write(json.dumps(ev) + '\n')
                log.flush()
        if (a.save_every and (step + 1) % a.save_every == 0) or step + 1 == a.steps:
            save(step + 1)
    secs = time.perf_counter() - t_start
    if rank == 0:
        print(json.dumps({'steps': a.steps, 'tokens': total_tokens, 'tokens_per_s': total_tokens / secs, 'world': world}))
        log.close()
    dist.destroy_process_group()
    return 0


if __name__ == '__main__':
    sys.exit(main())
