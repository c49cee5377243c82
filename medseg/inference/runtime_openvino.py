"""A PyTorch network run by OpenVINO on the CPU, as a drop-in for the network the sliding window calls.

:func:`openvino_network` converts any ``torch.nn.Module`` mapping windows ``(B, C, *patch)`` to logits
``(B, K, *patch)`` (medseg's own models, an imported nnU-Net network, a fold of an ensemble) with
``openvino.convert_model`` (traced on one example window; batch dimension left dynamic, so the last,
smaller batch of a scan costs only its own windows), through the converted-network cache
(:mod:`~medseg.inference.runtime_cache`), and compiles it for the CPU. The result,
:class:`OpenVinoNetwork`, takes and returns torch tensors, so test-time mirroring
(:func:`~medseg.inference.tta.mirrored`) wraps it and the sliding window blends its output unchanged.

Precision: ``"bfloat16"`` compiles with OpenVINO's ``INFERENCE_PRECISION_HINT`` ``bf16`` (AMX /
AVX512-BF16 kernels; weights and activations in bfloat16, accumulation in float32), ``"float32"`` with
``f32``; the choice is :func:`medseg.inference.cpu.resolve_precision`'s, as for PyTorch. Threads:
``INFERENCE_NUM_THREADS`` is set to ``torch.get_num_threads()``, so the limits a user sets for PyTorch
(``OMP_NUM_THREADS``, ``torch.set_num_threads``, ``medseg predict``'s one per physical core) hold for
OpenVINO too, and one inference stream runs (the windows of a scan are run one batch after another).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.inference.runtime import openvino_version
from medseg.inference.runtime_cache import IrKey, cached_model, network_sha256

__all__ = ["OpenVinoNetwork", "compile_model", "convert_network", "openvino_network", "openvino_networks"]

logger = logging.getLogger(__name__)

_HINTS = {"float32": "f32", "bfloat16": "bf16"}


class OpenVinoNetwork:
    """A compiled OpenVINO model called like the PyTorch network it was converted from.

    Args:
        compiled: The ``openvino.CompiledModel`` (one input, the logits as output 0).
        input_shape: One window's input ``(C, *patch)`` it was converted for.
        precision: ``"float32"`` or ``"bfloat16"``, the inference precision it was compiled with.
    """

    def __init__(self, compiled: Any, *, input_shape: Sequence[int], precision: str) -> None:
        self.compiled = compiled
        self.input_shape = tuple(int(s) for s in input_shape)
        self.precision = precision
        self._request = compiled.create_infer_request()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K, *patch)`` float32 (a CPU tensor) of windows ``x`` ``(B, C, *patch)``."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"OpenVINO network converted for windows {self.input_shape}, got {tuple(x.shape[1:])}")
        array = np.ascontiguousarray(x.detach().cpu().float().numpy())
        out = self._request.infer({0: array})[0]
        return torch.from_numpy(np.array(out, dtype=np.float32, copy=True))  # the request reuses its buffer


def convert_network(network: torch.nn.Module, input_shape: Sequence[int]) -> Any:
    """``openvino.Model`` of ``network`` (in ``eval()`` mode) traced on one zero window ``(1, *input_shape)``,
    with a dynamic batch dimension; outputs after the first (deep supervision) are ignored by callers."""
    import openvino

    example = torch.zeros((1, *input_shape), dtype=torch.float32)
    shape = openvino.PartialShape([-1, *(int(s) for s in input_shape)])
    with torch.no_grad():
        return openvino.convert_model(network.cpu().eval(), example_input=example, input=[shape])


def compile_model(model: Any, *, precision: str, threads: int) -> Any:
    """``openvino.CompiledModel`` for the CPU at ``precision`` (``"float32"``/``"bfloat16"``) on ``threads``."""
    import openvino

    if precision not in _HINTS:
        raise ValueError(f"precision must be one of {list(_HINTS)}, got {precision!r}")
    config = {"INFERENCE_PRECISION_HINT": _HINTS[precision], "INFERENCE_NUM_THREADS": max(1, int(threads)),
              "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
    return openvino.Core().compile_model(model, "CPU", config)


def openvino_network(network: torch.nn.Module, *, input_shape: Sequence[int], precision: str,
                     cache_dir: str | os.PathLike, threads: int | None = None) -> OpenVinoNetwork:
    """``network`` converted (or read from the cache in ``cache_dir``) and compiled for this CPU.

    The first use of a network logs that it converts it and how long it took; later uses (this or another
    process) read the cached IR and only compile it.

    Args:
        network: Maps ``(B, C, *patch)`` to logits ``(B, K, *patch)`` (a list/tuple output: item 0).
        input_shape: One window's input ``(C, *patch)``.
        precision: ``"float32"`` or ``"bfloat16"``.
        cache_dir: The converted-network cache (:mod:`~medseg.inference.runtime_cache`).
        threads: CPU threads (``None``: ``torch.get_num_threads()``).
    """
    input_shape = tuple(int(s) for s in input_shape)
    key = IrKey(network_sha256=network_sha256(network), input_shape=input_shape, batch="dynamic",
                openvino=openvino_version() or "")
    t0 = time.perf_counter()

    def convert() -> Any:
        logger.info("converting the network to OpenVINO (first use of these weights with window %s, OpenVINO %s)",
                    input_shape, key.openvino.split("-")[0])
        return convert_network(network, input_shape)

    model, converted = cached_model(cache_dir, key, convert)
    t1 = time.perf_counter()
    compiled = compile_model(model, precision=precision, threads=threads or torch.get_num_threads())
    t2 = time.perf_counter()
    if converted:
        logger.info("converted the network to OpenVINO in %.1f s (cached in %s); compiled in %.2f s",
                    t1 - t0, cache_dir, t2 - t1)
    else:
        logger.info("OpenVINO network read from the cache in %.2f s, compiled (%s) in %.2f s", t1 - t0, precision,
                    t2 - t1)
    return OpenVinoNetwork(compiled, input_shape=input_shape, precision=precision)


def openvino_networks(networks: Sequence[torch.nn.Module], *, input_shape: Sequence[int], precision: str,
                      cache_dir: str | os.PathLike | None, memo: dict) -> list[OpenVinoNetwork]:
    """:func:`openvino_network` of each network (the folds of an ensemble, each converted), compiled once per
    process: ``memo`` (a dict the caller keeps, e.g. the predictor) holds them across scans.

    Args:
        cache_dir: ``None``: :func:`~medseg.inference.runtime_cache.default_cache_dir`.
    """
    from medseg.inference.runtime_cache import default_cache_dir

    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    threads = torch.get_num_threads()
    out = []
    for network in networks:
        key = (id(network), tuple(input_shape), precision, threads, str(cache))
        held = memo.get(key)
        if held is None or held[0] is not network:
            held = memo[key] = (network, openvino_network(network, input_shape=input_shape, precision=precision,
                                                          cache_dir=cache, threads=threads))
        out.append(held[1])
    return out
