"""The speed of one CPU over time, with nothing of ours running beside it but the same loop on the other CPU:
a fixed amount of integer work (about 1 ms) timed again and again for SECONDS, pinned to CPU.

python docs/two_speeds/cpu_speed.py CPU SECONDS OUT.json"""

import json
import os
import sys
import time

cpu, seconds, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
os.sched_setaffinity(0, {cpu})
times, starts = [], []
end = time.monotonic() + seconds
while time.monotonic() < end:
    t0 = time.perf_counter()
    x = 0
    for i in range(20000):
        x += i * i
    times.append(time.perf_counter() - t0)
    starts.append(t0)
with open(out, "w") as fh:
    json.dump({"cpu": cpu, "unit_s": times, "start_s": starts}, fh)
