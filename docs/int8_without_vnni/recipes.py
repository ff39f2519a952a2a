"""int8 formats on a CPU without an 8-bit dot product: each ONNX Runtime `quantize_static` recipe's agreement with
float32 on the suite's evaluation set, in ONNX Runtime and OpenVINO, and its speed against ONNX Runtime fp32
(rounds of 5 calls, one untimed call first, rotated through the files; the median of per-rotation ratios).

    python docs/int8_without_vnni/recipes.py MODEL OUT.json

The reference is ONNX Runtime fp32 on the same export. Layers are named by the export's node names."""
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from cpubench.agreement import agreement_rate
from cpubench.images import make_batch
from cpubench.machine import cpu_flags, llvm_cpu
from cpubench.models import build_model
from cpubench.onnx_export import export_onnx
from cpubench.quantize import calibration_set, evaluation_set, int8_dot_product

name, out_path = sys.argv[1], sys.argv[2]
model = build_model(name, None, 1, None)
onnx_path = export_onnx(model)
calibration, evaluation = calibration_set(model), evaluation_set(model)
graph = onnx.load(str(onnx_path)).graph


def group(node):
    return next((a.i for a in node.attribute if a.name == "group"), 1)


depthwise = [n.name for n in graph.node if n.op_type == "Conv" and group(n) > 1]
dense = [n.name for n in graph.node if n.op_type == "Conv" and group(n) == 1]
U8S8 = dict(activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
recipes = {
    "U8S8 (the suite's format with VNNI)": U8S8,
    "U8S8, reduce_range (7-bit weights)": dict(U8S8, reduce_range=True),
    "U8U8 (uint8 weights: the suite's format without VNNI)": dict(U8S8, weight_type=QuantType.QUInt8),
    "S8S8": dict(U8S8, activation_type=QuantType.QInt8),
    "U8S8, dense convolutions left float32": dict(U8S8, nodes_to_exclude=dense),
    "U8S8, depthwise convolutions left float32": dict(U8S8, nodes_to_exclude=depthwise),
}
if not depthwise:
    del recipes["U8S8, depthwise convolutions left float32"]


def ort_session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ov_model(path):
    return ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": "2"})


def runner(kind, path):
    if kind == "onnxruntime":
        session = ort_session(path)
        name_in = session.get_inputs()[0].name
        return lambda x: session.run(None, {name_in: x})[0]
    compiled = ov_model(path)
    return lambda x: compiled([x])[0]


def logits(call):
    return np.concatenate([call(make_batch(x, 1)) for x in evaluation])


reference = logits(runner("onnxruntime", onnx_path))
files = {"fp32": onnx_path}
result = {"model": name, "llvm_cpu": llvm_cpu(), "int8_dot_product": int8_dot_product() or "none",
          "avx2": "avx2" in cpu_flags(), "onnxruntime": ort.__version__, "openvino": ov.__version__,
          "evaluation_images": len(evaluation), "recipes": {}}
for recipe, settings in recipes.items():
    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(calibration)

        def get_next(self):
            item = next(self.items, None)
            return None if item is None else {model.input_name: make_batch(item, 1)}

    path = Path(tempfile.mkdtemp()) / "model.onnx"
    quantize_static(str(onnx_path), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True, **settings)
    files[recipe] = path
    entry = {}
    for kind in ("onnxruntime", "openvino"):
        rate = agreement_rate(reference, logits(runner(kind, path)), "int8")
        entry[f"{kind}_agrees"] = f"{rate['agree']}/{rate['judged']}"
    entry["near_ties_set_apart"] = rate["near_ties"]
    result["recipes"][recipe] = entry
    print(name, recipe, entry, flush=True)

calls = {(kind, recipe): runner(kind, path) for recipe, path in files.items() for kind in ("onnxruntime", "openvino")}
x = make_batch(calibration[0], 1)
times = {key: [] for key in calls}
for _ in range(15):
    for key, call in calls.items():
        call(x)
        started = time.perf_counter()
        for _ in range(5):
            call(x)
        times[key].append((time.perf_counter() - started) / 5)
base = np.array(times[("onnxruntime", "fp32")])
for (kind, recipe), values in times.items():
    entry = result["recipes"].setdefault(recipe, {})
    entry[f"{kind}_ms"] = round(float(np.median(values)) * 1e3, 2)
    entry[f"{kind}_x_onnxruntime_fp32"] = round(float(np.median(np.array(values) / base)), 2)
print(json.dumps(result, indent=1))
Path(out_path).write_text(json.dumps(result, indent=1) + "\n")
