"""Training: pipeline configuration, the training loop and distributed setup (checkpoints: :mod:`medseg.runs`).

Example:
    >>> from medseg.training import load_pipeline, train
    >>> config = load_pipeline("liver", overrides=["training.epochs=50"])  # doctest: +SKIP
    >>> train(config, run_dir="runs/liver/fold0", data="data/LiTS", fold=0)  # doctest: +SKIP
"""

from medseg.utils.lazy import lazy_exports

_EXPORTS = {
    "PipelineConfig": "config",
    "apply_overrides": "overrides",
    "config_from_dict": "loader",
    "find_pipeline": "loader",
    "load_pipeline": "loader",
    "PatchSettings": "data",
    "make_loader": "data",
    "build_optimizer": "optimization",
    "build_scheduler": "optimization",
    "load_run_config": "run_files",
    "train": "loop",
    "make_folds": "splits",
    "prepare_data": "prepare",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
