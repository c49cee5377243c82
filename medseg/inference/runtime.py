"""Which runtime computes the network: PyTorch, or OpenVINO on the CPU.

A network trained on a GPU is often run on a CPU workstation. There, Intel's OpenVINO runtime computes the
same network 2.5-5x faster than PyTorch's eager oneDNN path on the same threads (measured in
``docs/benchmarks.md``: graph-level fusion of convolution, normalisation and activation, and bfloat16 on
AMX where the CPU has it). DKFZ's CPU entry to the FLARE 2024 challenge ran nnU-Net this way.

``"auto"`` chooses OpenVINO on a CPU where the ``openvino`` package imports, and PyTorch on CUDA and
everywhere else; ``"openvino"`` asks for it (refused on CUDA or where it is not installed);
``"torch"`` keeps PyTorch. Only the network's forward pass changes runtime: windows, blending, test-time
mirroring, fold ensembles and post-processing stay the same code (:mod:`~medseg.inference.runtime_openvino`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medseg.errors import ConfigError

__all__ = ["RUNTIMES", "network_input_shape", "openvino_available", "openvino_version", "resolve_runtime"]

if TYPE_CHECKING:
    import torch

#: Values of ``InferenceSettings.runtime`` / ``medseg predict --runtime``.
RUNTIMES = ("auto", "torch", "openvino")


def openvino_available() -> bool:
    """Whether the ``openvino`` package imports here (it has wheels for x86-64 and ARM64 Linux, macOS and
    Windows; ``pip install medseg`` brings it where they exist)."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def openvino_version() -> str | None:
    """The installed OpenVINO's full version (``"2026.4.1-22982-..."``), ``None`` if it does not import."""
    if not openvino_available():
        return None
    import openvino

    return str(openvino.get_version())


def resolve_runtime(runtime: str, device: str | torch.device) -> str:
    """The runtime a run uses: ``"torch"`` or ``"openvino"``.

    Args:
        runtime: ``"auto"`` (OpenVINO on a CPU where it imports, else PyTorch), ``"torch"`` or ``"openvino"``.
        device: Where the network runs.

    Raises:
        ConfigError: ``runtime`` is not one of :data:`RUNTIMES`, or ``"openvino"`` was asked for on a CUDA
            device or without the ``openvino`` package.
    """
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {list(RUNTIMES)}, got {runtime!r}")
    import torch

    on_cpu = torch.device(device).type == "cpu"
    if runtime == "auto":
        return "openvino" if on_cpu and openvino_available() else "torch"
    if runtime == "openvino":
        if not on_cpu:
            raise ConfigError(f"runtime 'openvino' runs on the CPU, not on {device} (--device cpu, or --runtime torch)")
        if not openvino_available():
            raise ConfigError("runtime openvino needs the openvino package: pip install openvino, or --runtime torch")
    return runtime


def network_input_shape(channels: int, patch_size: tuple[int, ...], context_slices: int = 0) -> tuple[int, ...]:
    """The network's input per window, ``(C, *patch)``: ``channels`` image channels, times ``2k + 1`` for a
    2D model reading ``k`` context slices each side (as the sliding window stacks them)."""
    return (channels * (2 * context_slices + 1) if len(patch_size) == 2 else channels, *patch_size)
