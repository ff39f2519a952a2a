"""Whether three runs' intervals overlap, per variant: each run's ratio to ONNX Runtime with its interval (from its
report.json, `ratios_vs_onnxruntime`), whether one ratio lies in every interval, and the runs' spread (largest
ratio over smallest, less one).

python docs/interval_overlap.py OUT.json RUN1/report.json RUN2/report.json RUN3/report.json"""

import json
import os
import sys
from pathlib import Path

out, reports = sys.argv[1], [json.loads(Path(path).read_text()) for path in sys.argv[2:]]
machine = reports[0]["machine"]
result = {"machine": f"{os.cpu_count()}-core {machine.get('cpu_name', '')} (LLVM {machine.get('llvm_cpu', '')}), "
                     f"{reports[0]['threads']} threads, batch {reports[0]['batch_size']}",
          "command": "pytest benches/ (default: both models, fp32, 60 rotations), three times back to back",
          "ratios_vs_onnxruntime": {}}
variants = set.intersection(*(set(r["ratios_vs_onnxruntime"]) for r in reports))
for variant in sorted(v for v in variants if not v.endswith("-onnxruntime")):  # the reference's own ratio is 1
    ratios = [r["ratios_vs_onnxruntime"][variant] for r in reports]
    intervals = [[round(x["value"], 3), round(x["low"], 3), round(x["high"], 3)] for x in ratios]
    values = [x["value"] for x in ratios]
    result["ratios_vs_onnxruntime"][variant] = {
        "intervals": intervals,
        "all_overlap": max(x["low"] for x in ratios) <= min(x["high"] for x in ratios),
        "spread": round(max(values) / min(values) - 1, 3)}
with open(out, "w") as fh:
    json.dump(result, fh, indent=1)
held = result["ratios_vs_onnxruntime"]
print(f"{sum(v['all_overlap'] for v in held.values())} of {len(held)} variants' intervals overlap in all runs; "
      "not: " + ", ".join(f"{k} {v['intervals']}" for k, v in held.items() if not v["all_overlap"]))
