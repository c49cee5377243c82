"""The child process of the `medseg predict` benchmarks (bench_openvino.py, bench_crf.py).

``python -c PREDICT_CHILD predict ...`` runs the CLI as a user would, records the predictor's own step
timings (its ``*_s`` statistics; run.json keeps read/predict/write only) and prints one line
``BENCH {"code", "seconds", "peak_mb", "steps"}`` (``peak_mb``: the process's ``VmHWM``; ``steps`` also holds
``windows``, the sliding windows run, coarse and fine, counted at ``WindowBlend.run``).
"""

PREDICT_CHILD = """
import json, sys, time
t0 = time.perf_counter()
from medseg.cli import main
from medseg.inference.predictor import Predictor
from medseg.inference.sliding_window import WindowBlend
steps, predict, blend_run = {"windows": 0}, Predictor.predict, WindowBlend.run

def counting(self, network, **kwargs):
    ran = blend_run(self, network, **kwargs)
    steps["windows"] += ran
    return ran

def recording(self, volume):
    labels, stats = predict(self, volume)
    steps.update({k: v for k, v in stats.items() if k.endswith("_s")})
    return labels, stats

Predictor.predict = recording
WindowBlend.run = counting
code = main(sys.argv[1:])
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print("BENCH " + json.dumps({"code": code, "seconds": time.perf_counter() - t0, "peak_mb": hwm / 1024,
                             "steps": steps}))
"""
