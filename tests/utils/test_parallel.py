"""map_with_progress: order, worker processes, and torch in forked workers."""

from __future__ import annotations

import os
import subprocess
import sys

from medseg.utils.parallel import map_with_progress


def _square(x: int) -> int:
    return x * x


def _pid(_: int) -> int:
    return os.getpid()


def test_results_in_input_order_in_process_and_in_workers():
    assert map_with_progress(_square, range(7), workers=1, disable=True) == [x * x for x in range(7)]
    assert map_with_progress(_square, range(7), workers=2, disable=True) == [x * x for x in range(7)]
    assert os.getpid() not in map_with_progress(_pid, range(4), workers=2, disable=True)


def test_torch_in_forked_workers_after_parent_used_threads():
    """The parent runs a multi-threaded torch op first; forked workers must still finish."""
    code = (
        "import torch\n"
        "from medseg.utils.parallel import map_with_progress\n"
        "torch.set_num_threads(2); torch.ones(256, 256) @ torch.ones(256, 256)\n"
        "def f(n):\n"
        "    import torch\n"
        "    return float((torch.ones(n, n) @ torch.ones(n, n)).sum())\n"
        "print(map_with_progress(f, [64, 128], workers=2, disable=True))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == str([64.0**3, 128.0**3])
