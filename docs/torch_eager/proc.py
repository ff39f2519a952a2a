import os
import statistics as st
import sys
import time
from pathlib import Path

import torch

from cpubench.models import build_model

torch.set_num_threads(int(os.environ.get("T", "2")))
if os.environ.get("FTZ"):
    torch.set_flush_denormal(True)
bm = build_model(os.environ.get("MODEL", "efficientnet_lite0"))
m = bm.module.eval()
x = torch.randn(*bm.input_shape)
ts = []
with torch.inference_mode():
    for _ in range(20):
        m(x)
    end = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end:
        t0 = time.perf_counter()
        m(x)
        ts.append(time.perf_counter() - t0)
cpus = {}
for tid in os.listdir("/proc/self/task"):
    f = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    cpus[tid] = (f[36], int(f[11]) + int(f[12]))  # last cpu, utime+stime ticks
busy = {t: v for t, v in cpus.items() if v[1] > 20}
ts.sort()
n = len(ts)
print(
    f"median {st.median(ts) * 1e3:.2f} ms  p10 {ts[n // 10] * 1e3:.2f}  p90 {ts[9 * n // 10] * 1e3:.2f}  n={n}"
        f"  busy threads (cpu, ticks) {sorted(busy.values())}",
    flush=True,
)
