"""Loads a frugal checkpoint in the twin, runs one forward/backward and writes logits, loss and every
parameter gradient (grad.<name>) to a safetensors file, for the parity test of the Node suite.

    python3 -m frugal_lm_torch.parity --model DIR --batch batch.json --out out.safetensors [--eval]

batch.json: {"inputs": [[ids...], ...], "targets": [[ids...], ...]}."""
import argparse
import json
import sys

import numpy as np
import torch

from .model import ConfigError, load_pretrained
from .safetensors_io import write_safetensors


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument('--model', required=True)
    ap.add_argument('--batch', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--eval', action='store_true')
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        model = load_pretrained(args.model)
    except (ConfigError, ValueError) as e:
        print(f'frugal-torch: {e}', file=sys.stderr)
        return 2
    model.train(not args.eval)
    with open(args.batch) as fh:
        b = json.load(fh)
    inputs = torch.tensor(b['inputs'], dtype=torch.long)
    targets = torch.tensor(b['targets'], dtype=torch.long)
    logits = model(inputs)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    loss.backward()
    out = {'logits': logits.detach().numpy().astype(np.float32), 'loss': np.array([loss.item()], dtype=np.float32)}
    for n, p in model.named_parameters():
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        out[f'grad.{n}'] = g.numpy().astype(np.float32)
    for n, t in model.named_buffers():
        if n.endswith('running_mean') or n.endswith('running_var'):
            out[f'buffer.{n}'] = t.numpy().astype(np.float32)
    write_safetensors(args.out, out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
