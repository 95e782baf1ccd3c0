"""PyTorch peer of bench/probes/webgpu-subgroup-matrix.ts: int8 x int8 -> int32 (torch._int_mm) and
bf16 matmul on the same M x N x K shapes, A [M, K] times B [N, K] transposed (the weight layout).

Usage: python3 bench/probes/torch_int8_peer.py '{"shapes": [[M, N, K], ...], "reps": 20}'
Prints one JSON line. Timing: warm-up calls, then CUDA events around `reps` calls, mean per call.
"""
import json
import sys

import torch

ARGS = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
if not torch.cuda.is_available():
    raise SystemExit("CUDA is not available to this PyTorch")
DEV = torch.device("cuda")
torch.manual_seed(0)


def time_ms(fn, reps, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def main():
    reps = int(ARGS.get("reps", 20))
    rows = []
    for m, n, k in ARGS["shapes"]:
        row = {"shape": f"{m}x{n}x{k}"}
        a = torch.randint(-127, 128, (m, k), dtype=torch.int8, device=DEV)
        w = torch.randint(-127, 128, (n, k), dtype=torch.int8, device=DEV)
        try:
            ref = torch._int_mm(a, w.t())
            # Exactness of the peer itself on a few entries (int64 on the host).
            a64, w64 = a[:4].cpu().long(), w[:4].cpu().long()
            row["int8_exact"] = bool(torch.equal(ref[:4, :4].cpu().long(), a64 @ w64.t()))
            ms = time_ms(lambda: torch._int_mm(a, w.t()), reps)
            row.update(int8_ms=ms, int8_tops=2 * m * n * k / ms / 1e9)
        except RuntimeError as e:
            row["int8_error"] = str(e).split("\n")[0]
        ab, wb = a.to(torch.bfloat16), w.to(torch.bfloat16)
        ms = time_ms(lambda: ab @ wb.t(), reps)
        row.update(bf16_ms=ms, bf16_tflops=2 * m * n * k / ms / 1e9)
        rows.append(row)
    print(json.dumps({"torch_version": torch.__version__, "torch_device": torch.cuda.get_device_name(0), "rows": rows}))


main()
