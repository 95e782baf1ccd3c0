#!/usr/bin/env bash
# Training throughput of `frugal train --engine torch --nproc 1` (PyTorch twin, DDP; CUDA when the
# machine has it) beside the native WebGPU trainer (`frugal train --device webgpu`) on the same model
# (125M dense LLaMA and FBI-LLM 130M, vocabulary 32000, seed 0), batch 8, ctx 1024, 6 torch / 5 WebGPU steps (as
# `frugal bench train-step --preset dense-125m`); plus one FSDP run stopped half-way and resumed,
# whose losses are compared with the uninterrupted DDP run. Every run has a time limit.
#   bench/torch-engine-gpu.sh OUTDIR [--tiny]      (--tiny: small shapes on the CPU, to check the script)
# Writes OUTDIR/summary.json and OUTDIR/log.txt.
set -uo pipefail
out=${1:?usage: bench/torch-engine-gpu.sh OUTDIR [--tiny]}
tiny=${2:-}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
F=(node --import tsx src/cli/dispatch.ts)
if [ "$tiny" = --tiny ]; then steps=6; half=3; wsteps=4; batch=2; ctx=32; else steps=6; half=3; wsteps=5; batch=8; ctx=1024; fi
# The whole script stays within BUDGET_S (default 145): each run gets its own limit or what is left,
# and a run with under 15 s left is skipped (most important runs first).
budget=${BUDGET_S:-145}
[ "$tiny" = --tiny ] && budget=$((budget * 5))
deadline=$((SECONDS + budget))
# Text: the repository's own documents (the embedded corpus is an optional npm package), byte tokens.
cat README.md ARCHITECTURE.md FEATURES.md bench/NOTES.md > "$work/corpus.txt"
common=(--data "$work/corpus.txt" --steps "$steps" --batch "$batch" --ctx "$ctx" --lr 1e-3 --warmup 2 --eval-every 0 --eval-sequences 8 --save-every 0 --quiet)
log() { echo "[$(date -u +%T)] $*" >&2; }
: > "$out/log.txt"
: > "$work/runs.txt"
# summary.json is rewritten after every run, so a run cut short by an outer limit still leaves the others.
summarize() {
python3 - "$work" "$out/summary.json" "$half" <<'PY'
import json, os, statistics, sys
work, dst, half = sys.argv[1], sys.argv[2], int(sys.argv[3])
res = {'runs': {}}
for line in open(os.path.join(work, 'runs.txt')):
    name, rc, wall = line.split()
    r = {'rc': int(rc), 'wall_s': float(wall)}
    base = name.replace('-resumed', '')
    path = os.path.join(work, base, 'metrics.jsonl')
    if os.path.exists(path):
        steps = [json.loads(l) for l in open(path) if l.strip()]
        steps = [s for s in steps if s.get('type') == 'step']
        r['losses'] = [s['loss'] for s in steps]
        # Steps 1-2 of a process hold the start-up (CUDA context, kernel selection, WebGPU pipelines).
        first = half + 2 if name.endswith('-resumed') else 3
        timed = [s['tokens_per_s'] for s in steps if s['step'] >= first and (not name.endswith('fsdp') or s['step'] <= half)]
        if timed:
            r['tokens_per_s_median'] = statistics.median(timed)
        r['flip_flop'] = [s['flip_flop'] for s in steps if 'flip_flop' in s][:3]
    res['runs'][name] = r
R = res['runs']
for fam in ('dense', 'fbi'):
    t, w = R.get(f'torch-{fam}', {}), R.get(f'webgpu-{fam}', {})
    if 'tokens_per_s_median' in t and 'tokens_per_s_median' in w:
        res[f'{fam}_webgpu_over_torch'] = w['tokens_per_s_median'] / t['tokens_per_s_median']
a, b = R.get('torch-dense', {}).get('losses'), R.get('torch-dense-fsdp-resumed', {}).get('losses')
if a and b and len(a) == len(b):
    res['fsdp_resumed_vs_ddp_max_abs_loss_diff'] = max(abs(x - y) for x, y in zip(a, b))
json.dump(res, open(dst, 'w'), indent=1)
print('summary: ' + json.dumps({k: v for k, v in res.items() if k != 'runs'}), file=sys.stderr)
PY
}
run() { # NAME LIMIT_S ARGS...
  local name=$1 limit=$2; shift 2
  [ "$tiny" = --tiny ] && limit=$((limit * 5))  # the CPU and SwiftShader are far slower
  local left=$((deadline - SECONDS))
  if [ "$left" -lt 15 ]; then log "$name: skipped ($left s of the budget left)"; echo "== $name: skipped, $left s of the budget left" >> "$out/log.txt"; return; fi
  [ "$limit" -gt "$left" ] && limit=$left
  log "$name: frugal train $*"
  local t0 rc t1
  t0=$(date +%s.%N)
  timeout "$limit" "${F[@]}" train "$@" > "$work/$name.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  echo "$name $rc $(awk "BEGIN{print $t1 - $t0}")" >> "$work/runs.txt"
  { echo "== $name (rc $rc): frugal train $*"; tail -n 4 "$work/$name.log"
    # A failed run keeps the worker's traceback (the launcher saves torchrun's whole output).
    if [ "$rc" -ne 0 ]; then f=$(grep -o 'full output: [^)]*' "$work/$name.log" | tail -n 1 | cut -d' ' -f3); [ -n "$f" ] && [ -f "$f" ] && tail -n 60 "$f"; fi
  } >> "$out/log.txt"
  log "$name: rc $rc, $(awk "BEGIN{print $t1 - $t0}") s"
  summarize
}
log "writing the initial checkpoints"
timeout 40 node --import tsx bench/probes/torch-engine-models.ts "$work/m" $tiny 2>> "$out/log.txt"
run torch-dense 50 --engine torch --nproc 1 --model "$work/m/dense-125m" --out "$work/torch-dense" "${common[@]}"
run webgpu-dense 35 --device webgpu --model "$work/m/dense-125m" --out "$work/webgpu-dense" "${common[@]}" --steps "$wsteps"
run torch-fbi 50 --engine torch --nproc 1 --model "$work/m/fbi-130m" --out "$work/torch-fbi" "${common[@]}"
run webgpu-fbi 40 --device webgpu --model "$work/m/fbi-130m" --out "$work/webgpu-fbi" "${common[@]}" --steps "$wsteps"
run torch-dense-fsdp 50 --engine torch --nproc 1 --fsdp --model "$work/m/dense-125m" --out "$work/torch-dense-fsdp" "${common[@]}" --stop-after "$half"
run torch-dense-fsdp-resumed 50 --engine torch --nproc 1 --fsdp --resume --out "$work/torch-dense-fsdp" --quiet
