"""Eager ResNet18 and ONNX Runtime alternately in one process (2 threads each, ORT not spinning): ratio per window."""

import io
import json
import os
import statistics as st
import sys
import time

import onnxruntime as ort
import torch

from cpubench.models import build_model

torch.manual_seed(0)
torch.set_num_threads(int(os.environ.get("T", "2")))
if os.environ.get("MALLOPT"):
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, 256 << 20)
    libc.mallopt(-1, 1 << 30)
if os.environ.get("NOMKLDNN"):
    torch.backends.mkldnn.enabled = False
MODEL = os.environ.get("MODEL", "resnet18")

bm = build_model(MODEL)
m = bm.module.eval()
x = torch.randn(*bm.input_shape) if hasattr(bm, "input_shape") else torch.randn(1, 3, 224, 224)
buf = io.BytesIO()
torch.onnx.export(m, (x,), buf, dynamo=False)
so = ort.SessionOptions()
so.intra_op_num_threads = int(os.environ.get("T", "2"))
so.add_session_config_entry("session.intra_op.allow_spinning", "0")
s = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
xn = x.numpy()
name = s.get_inputs()[0].name
seconds = float(sys.argv[2])
tag = sys.argv[1]
rows = []
with torch.inference_mode():
    for _ in range(10):
        m(x)
        s.run(None, {name: xn})
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        m(x)
        t1 = time.perf_counter()
        s.run(None, {name: xn})
        t2 = time.perf_counter()
        rows.append((t1 - t0, t2 - t1))

k = len(rows) // 8
tw = [st.median([a for a, _ in rows[i * k : (i + 1) * k]]) * 1e3 for i in range(8)]
ow = [st.median([b for _, b in rows[i * k : (i + 1) * k]]) * 1e3 for i in range(8)]
rw = [st.median([a / b for a, b in rows[i * k : (i + 1) * k]]) for i in range(8)]
print(tag, "torch ms ", " ".join(f"{v:.1f}" for v in tw))
print(tag, "ort ms   ", " ".join(f"{v:.1f}" for v in ow))
print(tag, "ratio    ", " ".join(f"{v:.2f}" for v in rw), f" spread {max(rw) / min(rw) - 1:.1%}")
with open(f"pair_{tag}.json", "w") as file:
    json.dump(rows, file)
