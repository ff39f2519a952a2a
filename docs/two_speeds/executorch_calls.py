"""Per-call times of one ExecuTorch program (XNNPACK) in one process, with no other work on the machine, as the
suite's worker would run it: threads from the command line, calls back to back for SECONDS, or in 50 ms rounds with
the process stopped (SIGSTOP from a helper) for PAUSE_MS between rounds, as the suite's interleaving does.

python docs/two_speeds/executorch_calls.py PROGRAM.pte THREADS SECONDS PAUSE_MS OUT.json [pin]

With `pin`, the main thread is bound to CPU 0 and every other thread (ExecuTorch's pool worker among them) to CPU 1,
so the kernel can never put the two that compute on one CPU; every thread's CPU is sampled beside each call."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
from executorch.extension.pybindings import portable_lib
from executorch.runtime import Runtime

program, threads, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
pause_ms, out = float(sys.argv[4]), sys.argv[5]
pin = len(sys.argv) > 6 and sys.argv[6] == "pin"
portable_lib._unsafe_reset_threadpool(threads)
method = Runtime.get().load_program(program).load_method("forward")
x = torch.randn(1, 3, 224, 224)
for _ in range(20):
    method.execute([x])
main_tid = threading.get_native_id()
tids = sorted(int(t) for t in os.listdir("/proc/self/task"))
if pin:
    for tid in tids:
        os.sched_setaffinity(tid, {0} if tid == main_tid else {1})
ordered = [main_tid] + [t for t in tids if t != main_tid]
names = [Path(f"/proc/self/task/{tid}/comm").read_text().strip() for tid in ordered]


def thread_cpus() -> list[int]:
    """Each thread's last CPU (field 39 of /proc/self/task/TID/stat), main thread first."""
    cpus = []
    for tid in ordered:
        try:
            cpus.append(int(Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()[36]))
        except OSError:
            cpus.append(-1)
    return cpus


calls, cpus, rounds = [], [], []
end = time.monotonic() + seconds
round_index = 0
while time.monotonic() < end:
    round_index += 1
    round_end = time.perf_counter() + 0.05
    method.execute([x])  # untimed, as each round of the suite starts
    while time.perf_counter() < round_end:
        t0 = time.perf_counter()
        method.execute([x])
        calls.append(time.perf_counter() - t0)
        cpus.append(thread_cpus())
        rounds.append(round_index)
    if pause_ms:  # stopped and resumed from outside, as the suite's orchestrator does between rounds
        subprocess.Popen(["sh", "-c", f"kill -STOP {os.getpid()}; sleep {pause_ms / 1e3}; kill -CONT {os.getpid()}"])
        time.sleep(pause_ms / 1e3 * 3)
with open(out, "w") as fh:  # not stdout: XNNPACK's cpuinfo prints there
    json.dump({"program": os.path.basename(program), "threads": threads, "pause_ms": pause_ms, "pinned": pin,
               "thread_names": names, "calls_s": calls, "thread_cpus": cpus,
               "round": rounds}, fh)
