"""numpy (OpenBLAS) float32 matmul GFLOP/s for shapes given as MxNxK arguments; prints one JSON object.
Best of several timed repetitions after a warmup, same protocol as bench/matmul.ts."""
import json
import sys
import time

import numpy as np

REPS = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 5
rows = []
for arg in [a for a in sys.argv[1:] if "x" in a]:
    m, n, k = (int(x) for x in arg.split("x"))
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    c = np.empty((m, n), dtype=np.float32)
    np.matmul(a, b, out=c)
    best = float("inf")
    for _ in range(REPS):
        t = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t)
    rows.append({"m": m, "n": n, "k": k, "gflops": 2.0 * m * n * k / best / 1e9})
print(json.dumps({"numpy": np.__version__, "rows": rows}))
