import io
import statistics as st
import sys
import time

import onnxruntime as ort
import torch

from cpubench.models import build_model

bm = build_model("efficientnet_lite0")
m = bm.module.eval()
x = torch.randn(*bm.input_shape)
buf = io.BytesIO()
torch.onnx.export(m, (x,), buf, dynamo=False)
so = ort.SessionOptions()
so.intra_op_num_threads = 2
s = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
xn = x.numpy()
name = s.get_inputs()[0].name
ts = []
for _ in range(20):
    s.run(None, {name: xn})
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    t0 = time.perf_counter()
    s.run(None, {name: xn})
    ts.append(time.perf_counter() - t0)
ts.sort()
n = len(ts)
print(
    f"ort median {st.median(ts) * 1e3:.2f} ms  p10 {ts[n // 10] * 1e3:.2f}  p90 {ts[9 * n // 10] * 1e3:.2f}  n={n}",
    flush=True,
)
