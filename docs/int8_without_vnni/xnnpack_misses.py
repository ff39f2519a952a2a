"""Which evaluation images ExecuTorch's int8 EfficientNet-Lite0 (XNNPACK) answers differently from float32 PyTorch,
their reference top-2 margins, and how far the int8 logits lie from float32's on every image (fractions of the
image's largest reference logit).

    python docs/int8_without_vnni/xnnpack_misses.py PROGRAM.pte OUT.json

PROGRAM.pte is the suite's cached int8 program (.cache/executorch/, the one its executorch-int8 row names)."""
import json
import sys
from pathlib import Path

import numpy as np
import torch
from executorch.runtime import Runtime

from cpubench.agreement import INT8_NEAR_TIE
from cpubench.images import make_batch
from cpubench.machine import llvm_cpu
from cpubench.models import build_model
from cpubench.quantize import evaluation_set

model = build_model("efficientnet_lite0", None, 1, None)
images = evaluation_set(model)
with torch.no_grad():
    reference = np.concatenate([model.module(torch.from_numpy(make_batch(x, 1))).numpy() for x in images])
method = Runtime.get().load_program(sys.argv[1]).load_method("forward")
int8 = np.concatenate([method.execute([torch.from_numpy(make_batch(x, 1))])[0].numpy() for x in images])
scale = np.abs(reference).max(axis=1)
ordered = np.sort(reference, axis=1)
margin = (ordered[:, -1] - ordered[:, -2]) / scale
distance = np.abs(int8 - reference).max(axis=1) / scale
judged = margin >= INT8_NEAR_TIE
same = reference.argmax(axis=1) == int8.argmax(axis=1)
result = {"llvm_cpu": llvm_cpu(), "program": Path(sys.argv[1]).name, "images": len(images),
          "judged": int(judged.sum()), "agree": int((same & judged).sum()),
          "misses": [{"image": int(i), "reference_margin": round(float(margin[i]), 4),
                      "int8_logit_distance": round(float(distance[i]), 4)}
                     for i in np.flatnonzero(judged & ~same)],
          "int8_logit_distance_median": round(float(np.median(distance)), 4),
          "int8_logit_distance_p90": round(float(np.quantile(distance, 0.9)), 4)}
print(json.dumps(result, indent=1))
Path(sys.argv[2]).write_text(json.dumps(result, indent=1) + "\n")
