"""Distributed trainer for the twin, launched by `frugal train|distill --engine torch` through torchrun:
DDP by default (gloo on CPU, nccl on CUDA), FSDP with --fsdp. Same schedule (linear warmup, cosine
to min lr), AdamW (0.9, 0.95, eps 1e-8, no decay on 1-D tensors and biases), global-norm clipping,
checkpoint folder (config.json + model.safetensors + tokenizer.json + trainer_state.json) and
metrics.jsonl records as the native trainer. The checkpoint also holds optimizer.pt (AdamW moments
and step, full state on rank 0 under FSDP), and trainer_state.json the data position, so --resume-from
continues the run exactly. With --teacher the loss is FBI-LLM's autoregressive distillation
(src/train/distill.ts): (1 - w) * softCE(student, teacher) + w * CE(student, targets)."""
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
import torch.nn.functional as F

from .model import ConfigError, FbiLinear, load_pretrained
from .safetensors_io import write_safetensors
from .shards import ShardError, read_shard


def lr_at(step, lr, min_lr, warmup, steps):
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    decay = max(1, steps - warmup)
    t = min(1.0, max(0.0, (step - warmup) / decay))
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * t))


class Batches:
    """Packed sequences (sequence i = tokens[i*ctx : i*ctx + ctx + 1]) in a seeded order per epoch;
    every rank walks the same order and takes its slice of each global batch. state()/restore() are
    the data position a checkpoint records."""

    def __init__(self, tokens, ctx, batch, seed, rank, world):
        self.tokens, self.ctx, self.batch, self.seed = tokens, ctx, batch, seed
        self.n = (len(tokens) - 1) // ctx
        if self.n < 1:
            raise ShardError(f'the training shard has {len(tokens)} tokens but one sequence needs ctx + 1 = {ctx + 1}')
        self.rank, self.world = rank, world
        self.epoch, self.pos, self.order = 0, 0, self._order(0)

    def _order(self, epoch):
        return np.random.RandomState(self.seed + epoch).permutation(self.n)

    def state(self):
        return {'engine': 'torch', 'epoch': self.epoch, 'pos': self.pos, 'sequences': self.n}

    def restore(self, st):
        if st.get('engine') != 'torch' or st.get('sequences') != self.n:
            raise ShardError(f"the checkpoint's data position ({st}) does not fit this shard ({self.n} sequences); an exact resume needs the same data")
        self.epoch, self.pos = int(st['epoch']), int(st['pos'])
        self.order = self._order(self.epoch)

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


def soft_cross_entropy(logits, teacher_logits):
    """Mean over rows of -sum_v softmax(teacher)_v log softmax(student)_v (temperature 1)."""
    v = logits.shape[-1]
    p = F.softmax(teacher_logits.reshape(-1, v).float(), dim=-1)
    return -(p * F.log_softmax(logits.reshape(-1, v), dim=-1)).sum(-1).mean()


class FlipFlop:
    """FBI flip-flop ratio: the fraction of binarized weights whose sign (w > 0) changed in the last
    update, and bits per parameter (1 per binarized weight, 32 per other parameter), as
    src/train/hooks.ts. Under FSDP each rank sees its shard; counts are summed over ranks."""

    def __init__(self, model, device, sharded):
        self.weights = [m.weight for m in model.modules() if isinstance(m, FbiLinear)]
        self.device, self.sharded = device, sharded
        self.prev = None
        binarized = sum(w.numel() for w in self.weights)
        total = sum(p.numel() for p in model.parameters())
        self.bits = (binarized + 32 * (total - binarized)) / total if total else 0.0

    def _signs(self):
        return [(w.detach() > 0) for w in self.weights]

    def prime(self):
        if self.prev is None:
            self.prev = self._signs()

    def after(self):
        now = self._signs()
        c = torch.zeros(2, dtype=torch.float64, device=self.device)
        for a, b in zip(now, self.prev):
            c[0] += (a != b).sum()
            c[1] += a.numel()
        if self.sharded:
            dist.all_reduce(c)
        self.prev = now
        return {'flip_flop': (c[0] / c[1]).item() if c[1] > 0 else 0.0, 'bits_per_param': self.bits}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument('--init', required=True, help='checkpoint folder with the initial weights (its config.json is the one saved)')
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
    ap.add_argument('--resume-from', help='checkpoint folder (model/ of a torch-engine run) to continue from')
    ap.add_argument('--stop-after', type=int, help='stop with a checkpoint after this many steps although the schedule spans --steps')
    ap.add_argument('--teacher', help='teacher checkpoint folder: distillation loss')
    ap.add_argument('--gt-weight', type=float, default=0.0)
    ap.add_argument('--extra', help='JSON file merged into trainer_state.json "extra"')
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
    state = None
    try:
        model = load_pretrained(a.resume_from or a.init).to(device)
        tokens, vocab, tok_id = read_shard(a.train)
        val = read_shard(a.val)[0] if a.val else None
        teacher = None
        if a.teacher:
            teacher = load_pretrained(a.teacher).to(device).eval()
            teacher.requires_grad_(False)
            if teacher.config['vocabSize'] != model.config['vocabSize']:
                return fail(f"vocabulary mismatch: teacher has {teacher.config['vocabSize']} tokens, student {model.config['vocabSize']}; distillation needs one shared vocabulary")
        if a.resume_from:
            with open(os.path.join(a.resume_from, 'trainer_state.json')) as fh:
                state = json.load(fh)
    except (ConfigError, ShardError, ValueError, OSError) as e:
        return fail(str(e))
    if vocab > model.config['vocabSize']:
        return fail(f"{a.train}: written for a vocabulary of {vocab} but the model has {model.config['vocabSize']} entries")
    if state is not None and state.get('tokenizerId') not in (None, tok_id):
        return fail(f"cannot resume {a.resume_from}: it was trained with a different tokenizer ({state.get('tokenizerId')} vs {tok_id})")
    extra = {}
    if a.extra:
        with open(a.extra) as fh:
            extra = json.load(fh)
    no_decay = {n for n, p in model.named_parameters() if p.dim() < 2 or n.endswith('bias')}
    FSDP = None
    if a.fsdp:
        try:
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        except Exception as e:  # Debian's PyTorch 1.13 on Python 3.11: its sharded-tensor dataclasses fail to import
            return fail(f'--fsdp: this PyTorch build cannot load FSDP ({type(e).__name__}: {str(e)[:120]}); use DDP (drop --fsdp) or PyTorch >= 2.0')
        net = FSDP(model, use_orig_params=True, device_id=device if cuda else None)
    else:
        net = torch.nn.parallel.DistributedDataParallel(model)
        _KEEP_ALIVE.append(net)  # see the end of this file
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
    flips = FlipFlop(model, device, a.fsdp) if any(isinstance(m, FbiLinear) for m in model.modules()) else None

    start, total_tokens = 0, 0
    if state is not None:
        try:
            data.restore(state.get('data') or {})
        except ShardError as e:
            return fail(str(e))
        start, total_tokens = int(state['step']), int(state.get('tokens', 0))
        try:
            # Tensors and plain containers only (PyTorch 1.x's weights-only loader cannot read floats).
            safe = {'weights_only': True} if int(torch.__version__.split('.')[0]) >= 2 else {}
            osd = torch.load(os.path.join(a.resume_from, 'optimizer.pt'), map_location='cpu', **safe)
            if a.fsdp:
                _fsdp_load_optim(net, opt, osd, FSDP)
            else:
                opt.load_state_dict(osd)
        except Exception as e:
            return fail(f"cannot resume {a.resume_from}: its optimizer state does not fit this run ({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}); was it written with the same model and --fsdp setting?")

    os.makedirs(a.out, exist_ok=True)
    log = None
    if rank == 0:
        path = os.path.join(a.out, 'metrics.jsonl')
        kept = []
        if start and os.path.exists(path):
            # As the native MetricsLog.truncateAfter: records past the checkpoint's step are dropped.
            with open(path) as fh:
                kept = [l for l in fh if l.strip() and json.loads(l).get('step', 0) <= start]
        log = open(path, 'w')
        log.writelines(kept)
        log.flush()
    t_start = time.perf_counter()
    run_tokens = 0

    def loss_of(x, y):
        logits = net(x)
        if teacher is None:
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        with torch.no_grad():
            t = teacher(x)
        soft = soft_cross_entropy(logits, t)
        if a.gt_weight == 0:
            return soft
        return (1 - a.gt_weight) * soft + a.gt_weight * F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    def validate(step):
        net.eval()
        n = min(a.eval_sequences, (len(val) - 1) // a.ctx)
        tot, cnt = 0.0, 0
        with torch.no_grad():
            for s in range(0, n, a.batch):
                ids = range(s, min(n, s + a.batch))
                seqs = torch.from_numpy(np.stack([val[i * a.ctx:i * a.ctx + a.ctx + 1] for i in ids]).astype(np.int64)).to(device)
                logits = net(seqs[:, :-1])
                l = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), seqs[:, 1:].reshape(-1))
                tot += l.item() * seqs[:, 1:].numel()
                cnt += seqs[:, 1:].numel()
        net.train()
        loss = tot / max(cnt, 1)
        return {'type': 'eval', 'step': step, 'val_loss': loss, 'val_ppl': math.exp(loss)}

    def save(step):
        if a.fsdp:
            # Full (unsharded) state dicts, gathered on rank 0 and offloaded to the CPU.
            sd, osd = _fsdp_full_state(net, opt, FSDP)
            tensors = {strip(k): v for k, v in sd.items()}
        else:
            tensors = dict(list(model.named_parameters()) + list(model.named_buffers()))
            osd = opt.state_dict()
        if rank != 0:
            return
        dst = os.path.join(a.out, 'model')
        tmp = dst + '.tmp'
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        out = {}
        for name, t in tensors.items():
            t = t.detach().cpu()
            out[name] = t.to(torch.int32).numpy().reshape(()) if name.endswith('num_batches_tracked') else t.to(torch.float32).numpy()
        write_safetensors(os.path.join(tmp, 'model.safetensors'), out, {'format': 'pt'})
        for f in ('config.json', 'tokenizer.json'):
            if os.path.exists(os.path.join(a.init, f)):
                shutil.copy(os.path.join(a.init, f), os.path.join(tmp, f))
        torch.save(osd, os.path.join(tmp, 'optimizer.pt'))
        st = {'step': step, 'totalSteps': a.steps, 'data': data.state(), 'rng': [], 'tokens': total_tokens, 'tokenizerId': tok_id,
              'extra': {**extra, 'engine': 'torch', 'world': world, 'fsdp': a.fsdp}}
        with open(os.path.join(tmp, 'trainer_state.json'), 'w') as fh:
            json.dump(st, fh, indent=2)
        # The records up to this step reach the disk before the checkpoint that covers them.
        log.flush()
        os.fsync(log.fileno())
        old = dst + '.old'
        shutil.rmtree(old, ignore_errors=True)
        if os.path.exists(dst):
            os.replace(dst, old)
        os.replace(tmp, dst)
        shutil.rmtree(old, ignore_errors=True)

    end = min(a.steps, a.stop_after) if a.stop_after else a.steps
    net.train()
    step = start
    while step < end:
        ts = time.perf_counter()
        cur = lr_at(step, a.lr, min_lr, warmup, a.steps)
        for g in opt.param_groups:
            g['lr'] = cur
        loss_sum = 0.0
        for _ in range(a.accum):
            x, y = data.next()
            loss = loss_of(x.to(device), y.to(device))
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
            return fail(f'training diverged at step {step + 1} (loss {loss_sum / a.accum}, grad norm {norm}); lower the learning rate or enable clipping')
        if flips:
            flips.prime()
        factor = (a.clip / (norm + 1e-6) if a.clip > 0 and norm > a.clip else 1.0) / a.accum
        for p in params.values():
            if p.grad is not None:
                p.grad.mul_(factor)
        opt.step()
        opt.zero_grad(set_to_none=True)
        extras = flips.after() if flips else {}
        step += 1
        step_tokens = a.batch * a.ctx * a.accum
        total_tokens += step_tokens
        run_tokens += step_tokens
        dt = time.perf_counter() - ts
        rec = {'type': 'step', 'step': step, 'loss': loss_sum / a.accum, 'lr': cur, 'grad_norm': norm,
               'tokens_per_s': step_tokens / dt, 'tokens': total_tokens, **extras}
        if log:
            log.write(json.dumps(rec) + '\n')
            log.flush()
        if val is not None and ((a.eval_every and step % a.eval_every == 0) or step == a.steps):
            ev = validate(step)
            if log:
                log.write(json.dumps(ev) + '\n')
                log.flush()
        if (a.save_every and step % a.save_every == 0) or step == end:
            save(step)
    secs = time.perf_counter() - t_start
    if rank == 0:
        print(json.dumps({'steps': step, 'tokens': run_tokens, 'tokens_per_s': run_tokens / max(secs, 1e-9), 'world': world}))
        log.close()
    dist.destroy_process_group()
    return 0


def _fsdp_full_state(net, opt, FSDP):
    """Unsharded model and optimizer state of an FSDP model, keyed by parameter name, gathered on rank 0
    and offloaded to the CPU (other ranks get empty dicts)."""
    try:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict
    except ImportError:  # PyTorch < 2.2
        with FSDP.state_dict_type(net, *_full_state_cfg()):
            return net.state_dict(), FSDP.optim_state_dict(net, opt)
    return get_state_dict(net, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def _fsdp_load_optim(net, opt, osd, FSDP):
    """Loads a full optimizer state written by _fsdp_full_state into every rank's shard (each rank read
    the file itself)."""
    try:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
    except ImportError:  # PyTorch < 2.2
        from torch.distributed.fsdp import FullOptimStateDictConfig, FullStateDictConfig, StateDictType
        with FSDP.state_dict_type(net, StateDictType.FULL_STATE_DICT, FullStateDictConfig(), FullOptimStateDictConfig()):
            opt.load_state_dict(FSDP.optim_state_dict_to_load(net, opt, osd))
        return
    set_optimizer_state_dict(net, opt, osd, options=StateDictOptions(full_state_dict=True))


def _full_state_cfg():
    from torch.distributed.fsdp import FullOptimStateDictConfig, FullStateDictConfig, StateDictType
    return (StateDictType.FULL_STATE_DICT, FullStateDictConfig(offload_to_cpu=True, rank0_only=True),
            FullOptimStateDictConfig(offload_to_cpu=True, rank0_only=True))


# The DDP wrappers of this process, kept referenced until the process exits. On PyTorch 1.13 freeing
# one (when main() returns, or at interpreter teardown) can free the gloo process group from the DDP
# reducer's destructor, which joins a gloo worker thread that is waiting for the GIL the destructor's
# thread holds: a deadlock. Kept alive, the wrappers are only ever released by os._exit below.
_KEEP_ALIVE = []

if __name__ == '__main__':
    try:
        code = main()
    except BaseException:  # noqa: B902 - report, then leave without teardown as below
        import traceback
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown (see _KEEP_ALIVE). Every file is closed and the checkpoint renamed
    # into place by now.
    os._exit(code)
