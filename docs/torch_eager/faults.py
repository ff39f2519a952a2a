"""Per-call time and minor page faults of eager ResNet18, 2 threads, in one process."""

import ctypes
import json
import resource
import statistics as st
import sys
import time

import torch
import torchvision

mode = sys.argv[1] if len(sys.argv) > 1 else "default"
if mode == "mallopt":
    libc = ctypes.CDLL("libc.so.6")
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    assert libc.mallopt(M_MMAP_THRESHOLD, 1 << 30) == 1 or True
    libc.mallopt(M_MMAP_THRESHOLD, 256 << 20)
    libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
torch.manual_seed(0)
torch.set_num_threads(2)
m = torchvision.models.resnet18().eval()
x = torch.randn(1, 3, 224, 224)
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 60
out = []
with torch.inference_mode():
    for _ in range(20):
        m(x)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        m(x)
        t1 = time.perf_counter()
        f1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        out.append((t1 - t0, f1 - f0))

n = len(out)
q = n // 4
for name, part in (("first", out[:q]), ("last", out[-q:]), ("all", out)):
    ts = [t for t, _ in part]
    fs = [f for _, f in part]
    print(
        f"{mode} {name}: n={len(part)} median {st.median(ts) * 1e3:.2f} ms"
        f"  p90 {sorted(ts)[int(0.9 * len(ts))] * 1e3:.2f}"
        f"  faults/call median {st.median(fs)} mean {st.mean(fs):.0f}"
    )
with open(f"faults_{mode}.json", "w") as file:
    json.dump(out, file)
