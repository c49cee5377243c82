"""The predictor: a trained run loaded once, then called on scans (``Volume`` in, label ``Volume`` out).

Example (a notebook)::

    from medseg.inference import Predictor
    from medseg.io import read_volume, write_volume

    predictor = Predictor.from_run("runs/liver/fold0")          # a run folder or a .pt checkpoint
    labels = predictor(read_volume("volume-3.nii.gz"))          # uint8, same shape and affine as the scan
    write_volume(labels, "3_seg.nii.gz", label=True)

    ensemble = Predictor.from_run("runs/liver")                 # a folder of fold runs: all trained folds
    ensemble = Predictor.from_runs(["runs/liver/fold0", "runs/liver/fold1"])   # or a list of runs

A fold ensemble (:mod:`~medseg.inference.ensemble`) runs the folds' networks one after another, each as
it would run alone, and averages their softmax probabilities; its coarse localisation pass is run once,
by all the folds together.

Steps per scan: the run's own preprocessing (as :func:`medseg.preprocessing.preprocess_image`: canonical
orientation, target spacing, intensity normalisation; computed block-wise with the body mask by
:func:`~medseg.inference.prepare.prepare_scan`), sliding-window logits
(:func:`~medseg.inference.sliding_window.predict_logits`) with windows that hold only air skipped,
optionally mirroring test-time augmentation, and in ``"coarse-to-fine"`` mode a first pass at
``coarse_factor`` times the spacing with no overlap that finds the liver, so the full-resolution pass runs
only in its bounding box (plus ``margin_mm``), grown and run again while the fine liver reaches a face
(:mod:`~medseg.inference.coarse_to_fine`). The logits are mapped back to the scan's voxel grid
(:func:`~medseg.inference.restore.restore_argmax`) and post-processed on that grid.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch

from medseg.errors import ConfigError, DataError
from medseg.inference.checks import ScanChecks
from medseg.inference.coarse_to_fine import CoarseToFineSettings, locate_box, refine_or_predict
from medseg.inference.cpu import PRECISIONS, resolve_precision
from medseg.inference.ensemble import (
    POSTPROCESSING_FILE,
    FoldEnsemble,
    FoldMean,
    find_fold_runs,
    fold_checkpoint,
    is_fold_folder,
    read_chosen_postprocessing,
)
from medseg.inference.imported import (
    crf_labels,
    mapped_scores,
    nnunet_predictor,
    prepare_input,
    restore_labels,
    restore_probabilities,
)
from medseg.inference.postprocess import PostprocessConfig, applies_to, postprocess_labels
from medseg.inference.runtime import RUNTIMES, network_input_shape, resolve_runtime
from medseg.inference.sliding_window import BOX_WINDOWS, MAX_OVERLAP, WindowSettings, predict_logits
from medseg.inference.tta import mirrored
from medseg.io.label_map import LabelMapping, apply_label_mapping
from medseg.io.volume import Volume
from medseg.labels import lits_labels
from medseg.preprocessing.plan import PreprocessingPlan
from medseg.runs.device import resolve_device
from medseg.runs.folder import find_checkpoint
from medseg.runs.provenance import TrainingData
from medseg.runs.record import RunRecord, ScanPlan
from medseg.utils.memory import release_freed_memory

if TYPE_CHECKING:
    from medseg.inference.crf import CrfSettings

__all__ = ["MODES", "InferenceSettings", "Predictor"]

logger = logging.getLogger(__name__)

MODES = ("coarse-to-fine", "full")


@dataclass(frozen=True)
class InferenceSettings:
    """How a scan is predicted; every field has a CLI flag of ``medseg predict``.

    Attributes:
        mode: ``"coarse-to-fine"`` (find the liver at low resolution, then full resolution in its box) or
            ``"full"`` (whole scan at full resolution; windows holding only air still skipped).
        overlap: Window overlap of the full-resolution pass, in ``[0, 1)``.
        batch_size: Windows per forward pass (``None``: 2 for 3D models, 16 for 2D).
        tta: Mirroring test-time augmentation along the axes the network was trained mirrored
            (``2^k`` times slower for ``k`` such axes).
        skip_air: Skip windows without a voxel above ``air_threshold_hu`` (outside the body).
        air_threshold_hu: HU threshold of the body mask.
        amp: float16 autocast on CUDA.
        precision: CPU compute precision: ``"auto"`` (bfloat16 autocast where the CPU has native bfloat16,
            else float32), ``"float32"`` or ``"bfloat16"`` (:func:`medseg.inference.cpu.resolve_precision`);
            the one used is ``stats["precision"]`` (for either runtime).
        runtime: What computes the network (:mod:`medseg.inference.runtime`): ``"auto"`` (OpenVINO on a CPU
            where it is installed, else PyTorch), ``"torch"`` or ``"openvino"``; the one used is
            ``stats["runtime"]``.
        cache_dir: Folder of converted networks for OpenVINO (``None``: ``~/.cache/medseg/openvino``;
            :mod:`medseg.inference.runtime_cache`).
        coarse_factor: Spacing multiplier of the coarse pass.
        coarse_overlap: Window overlap of the coarse pass.
        margin_mm: Margin added around the liver box found by the coarse pass.
        fine_windows: Windows of the fine pass (:class:`~medseg.inference.sliding_window.WindowSettings`'s
            ``box_windows``): ``"centred"`` (default: the whole-scan grid's windows centred in the box, about
            half of those reaching into it, and a full run's logits wherever a voxel's windows are all
            centred in the box), ``"reach"`` (every whole-scan window reaching into the box: exactly a full
            run's logits in it, but twice as many windows) or ``"tile"`` (a grid laid over the box: windows placed
            elsewhere than a full run's, and a grown box keeps the earlier tiles in its blend; this moved
            tumor Dice by up to 0.059 against ``--mode full`` on the phantom, docs/benchmarks.md).
        postprocessing: Overrides the run's post-processing (``None``: use the run's).
        progress: Show a progress bar over window batches.
        probabilities: :meth:`Predictor.predict` also returns the liver, tumor and uncertainty maps on the
            scan's grid as uint8 (``stats["probability_maps"]``, :mod:`medseg.inference.probability_maps`).
        scan_checks: Run ``medseg predict``'s scan checks (:class:`~medseg.inference.checks.ScanChecks`):
            unusable scans refused, scans unlike the training data reported in ``stats["warnings"]``.
        strict: The checks' findings are errors (``--strict``).
    """

    mode: str = "coarse-to-fine"
    overlap: float = 0.5
    batch_size: int | None = None
    tta: bool = False
    skip_air: bool = True
    air_threshold_hu: float = -500.0
    amp: bool = True
    precision: str = "auto"
    runtime: str = "auto"
    cache_dir: str | None = None
    coarse_factor: float = 2.0
    coarse_overlap: float = 0.0
    margin_mm: float = 15.0
    fine_windows: str = "centred"
    postprocessing: PostprocessConfig | None = None
    progress: bool = False
    probabilities: bool = False
    scan_checks: bool = True
    strict: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {list(MODES)}, got {self.mode!r}")
        for name in ("overlap", "coarse_overlap"):
            value = getattr(self, name)
            if not 0.0 <= value <= MAX_OVERLAP:  # more is a hang, not a better result (sliding_window.MAX_OVERLAP)
                raise ConfigError(f"{name} must be in [0, {MAX_OVERLAP}], got {value}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.coarse_factor >= 1.0:
            raise ConfigError(f"coarse_factor must be >= 1, got {self.coarse_factor}")
        if self.fine_windows not in BOX_WINDOWS:
            raise ConfigError(f"fine_windows must be one of {BOX_WINDOWS}, got {self.fine_windows!r}")
        if not self.margin_mm >= 0:
            raise ConfigError(f"margin_mm must be >= 0, got {self.margin_mm}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"runtime must be one of {list(RUNTIMES)}, got {self.runtime!r}")

    def coarse_to_fine(self) -> CoarseToFineSettings:
        """The coarse pass and box check of ``"coarse-to-fine"`` mode."""
        return CoarseToFineSettings(factor=self.coarse_factor, overlap=self.coarse_overlap, margin_mm=self.margin_mm)


@dataclass
class Predictor:
    """A network with its preprocessing plan and inference settings, loaded once.

    Build with :meth:`from_run` (or :meth:`from_checkpoint` for an in-memory checkpoint dict); call on a
    :class:`~medseg.io.Volume` to get a uint8 label map with the scan's shape and affine.

    What the run says (plan, patch size, classes, 2.5D context, mirrored axes, labels, what it was trained
    on) is its :class:`~medseg.runs.RunRecord`, held as it is and read through the properties below.

    Attributes:
        network: The model in ``eval()`` mode on ``device``.
        run: The run's :class:`~medseg.runs.RunRecord` (an ensemble: the first fold's).
        postprocessing: The run's post-processing configuration (parsed from ``run.postprocessing``, or
            the one ``medseg crossval`` chose).
        settings: :class:`InferenceSettings`.
        device: Where the network runs.
        members: Folds in ``network`` (a :class:`~medseg.inference.ensemble.FoldEnsemble` when > 1).
        sources: The checkpoint file of each fold.
        compiled: The OpenVINO networks compiled so far (runtime ``"openvino"``: once per fold, window and
            precision; shared with the copies :meth:`with_settings` makes).
        label_mapping: Another tool's classes read as liver and tumor (``--labels``), or ``None``.
        fold_runs: An ensemble's record of every fold, in order (empty for a single run).
    """

    network: torch.nn.Module
    run: RunRecord
    postprocessing: PostprocessConfig = field(default_factory=PostprocessConfig)
    settings: InferenceSettings = field(default_factory=InferenceSettings)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    members: int = 1
    sources: tuple[str, ...] = ()
    compiled: dict = field(default_factory=dict, repr=False, compare=False)
    label_mapping: LabelMapping | None = None
    fold_runs: tuple[RunRecord, ...] = ()

    # -- what the run says (its RunRecord) ---------------------------------------------------------
    @property
    def plan(self) -> PreprocessingPlan | ScanPlan:
        """The run's preprocessing plan."""
        return self.run.plan

    @property
    def patch_size(self) -> tuple[int, ...]:
        """Training patch size (the sliding window), 2 or 3 entries."""
        return self.run.patch_size

    @property
    def num_classes(self) -> int:
        """Output classes (0 = background)."""
        return self.run.num_classes

    @property
    def context_slices(self) -> int:
        """2.5D neighbours per side (2D models)."""
        return self.run.context_slices

    @property
    def mirror_axes(self) -> tuple[int, ...] | None:
        """Spatial axes mirrored in training, so the ones test-time augmentation mirrors (``None``: every
        axis, for checkpoints that do not record them)."""
        return self.run.mirror_axes

    @property
    def labels(self) -> dict[str, str]:
        """Class index (str) -> name."""
        return dict(self.run.labels)

    @property
    def training_data(self) -> tuple[TrainingData, ...]:
        """What each fold was trained on (one entry for a single run)."""
        return tuple(r.training_data for r in self.fold_runs) or (self.run.training_data,)

    @classmethod
    def from_run(cls, run: str | os.PathLike, *, device: str | torch.device = "auto",
                 settings: InferenceSettings | None = None, folds: Sequence[int] | None = None,
                 checkpoint: str = "final") -> Predictor:
        """Load a run folder (``best.pt``, else ``last.pt``), a checkpoint file, or a folder of fold runs
        (``fold<K>/``: the ensemble of every trained fold, or of ``folds``, post-processed as its
        ``postprocessing.json`` says when ``medseg crossval`` wrote one, else as the first fold's run), or
        an nnU-Net v2 trained-model folder (``.../DatasetXXX_Name/<trainer>__<plans>__<configuration>``:
        its ``fold_K`` ensemble, ``checkpoint_<checkpoint>.pth``; :mod:`medseg.inference.imported`)."""
        from medseg.interop.nnunet import is_nnunet_folder
        from medseg.runs.checkpoint import load_checkpoint

        if is_nnunet_folder(run):
            return nnunet_predictor(cls, run, device=device, settings=settings, folds=folds, checkpoint=checkpoint)
        if folds is not None or is_fold_folder(run):
            predictor = cls.from_runs([fold_checkpoint(r) for r in find_fold_runs(run, folds)], device=device,
                                      settings=settings)  # the checkpoints crossval evaluated
            chosen = read_chosen_postprocessing(run)  # chosen on the cross-validation (medseg crossval)
            if chosen is None:
                return predictor
            try:
                return replace(predictor, postprocessing=PostprocessConfig.from_dict(chosen))
            except ConfigError as exc:
                raise DataError(str(exc), path=os.path.join(run, POSTPROCESSING_FILE)) from None
        path = find_checkpoint(run)
        predictor = cls.from_checkpoint(load_checkpoint(path, map_location="cpu"), device=device, settings=settings,
                                        source=path)
        return replace(predictor, sources=(str(path),))

    @classmethod
    def from_runs(cls, runs: Sequence[str | os.PathLike], *, device: str | torch.device = "auto",
                  settings: InferenceSettings | None = None) -> Predictor:
        """The ensemble of several runs (folds): each a run folder or checkpoint file; one run is a plain
        predictor. The post-processing is the first run's.

        Raises:
            DataError: A run's plan, patch size, classes, labels, 2.5D context or mirrored axes differ from
                the first run's (one line naming both).
        """
        if not runs:
            raise ConfigError("from_runs needs at least one run")
        singles = [cls.from_run(run, device=device, settings=settings) for run in runs]
        first = singles[0]
        for other in singles[1:]:
            _check_same_model_grid(first, other)
        if len(singles) == 1:
            return first
        network = FoldEnsemble([p.network for p in singles]).eval()
        return replace(first, network=network, members=len(singles),
                       sources=tuple(s for p in singles for s in p.sources),
                       fold_runs=tuple(r for p in singles for r in (p.fold_runs or (p.run,))))

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any], *, device: str | torch.device = "auto",
                        settings: InferenceSettings | None = None, source: str | os.PathLike | None = None
                        ) -> Predictor:
        """Build from a checkpoint dict (the training format: ``model``, ``model_config``, ``plan``,
        ``inference``; read and checked by :meth:`medseg.runs.RunRecord.from_checkpoint`)."""
        from medseg.interop.nnunet import NNUNET_MODEL_NAME, build_trainable_network
        from medseg.models import build_model

        record = RunRecord.from_checkpoint(checkpoint, source=source)
        try:
            postprocessing = PostprocessConfig.from_dict(record.postprocessing)
            fine_tuned_nnunet = record.model_config["name"] == NNUNET_MODEL_NAME  # a run fine-tuned from nnU-Net
            network = (build_trainable_network if fine_tuned_nnunet else build_model)(record.model_config)
        except ConfigError as exc:
            raise DataError(f"checkpoint: {exc}", path=source) from None
        device = resolve_device(device)
        try:
            network.load_state_dict(checkpoint["model"])
        except RuntimeError as exc:
            raise DataError(f"weights do not fit the model config ({str(exc).splitlines()[0]})", path=source) from None
        network.eval().to(device)
        return cls(network=network, run=record, postprocessing=postprocessing, settings=settings or InferenceSettings(),
                   device=device)

    def applied_postprocessing(self) -> dict[str, Any] | None:
        """The post-processing every prediction gets (the settings' override, else the run's, or the one
        ``medseg crossval`` chose), as recorded in ``run.json``; ``None`` when none applies (classes other
        than liver and tumor without a ``label_mapping``)."""
        if self.label_mapping is None and not applies_to(self.labels):
            return None
        return (self.settings.postprocessing or self.postprocessing).to_dict()

    def with_settings(self, **changes: Any) -> Predictor:
        """A predictor sharing this one's network with some settings changed."""
        return replace(self, settings=replace(self.settings, **changes))

    # ------------------------------------------------------------------------------------------
    def __call__(self, volume: Volume) -> Volume:
        """uint8 label map of ``volume`` on its own grid (same shape and affine); the scan checks' findings
        are logged as warnings (:meth:`predict` returns them)."""
        labels, stats = self.predict(volume)
        for finding in stats["warnings"]:
            logger.warning("%s: %s", volume.meta.get("path", "scan"), finding)
        return labels

    def predict(self, volume: Volume) -> tuple[Volume, dict[str, Any]]:
        """Label map and run statistics (seconds per step, windows run, the liver box), with the scan
        checks' findings in ``stats["warnings"]`` (the checks of ``medseg predict``).

        Raises:
            DataError: An unusable scan (NaN/inf voxels, a label map given as a scan), or with ``strict`` a
                scan unlike the training data; one line naming the scan.
        """
        labels, _, stats = self._checked(volume, None)
        return labels, stats

    def predict_with_crf(self, volume: Volume, crf: CrfSettings) -> tuple[Volume, Volume, dict[str, Any]]:
        """The label map without the dense CRF and the same with ``crf`` (Krähenbühl & Koltun 2011) before the
        post-processing, from one network pass: what ``medseg crossval`` scores as the CRF candidate. The
        settings' own CRF, if any, is replaced by these two; the scan checks run as in :meth:`predict` (their
        findings, on the first map, in ``stats["warnings"]``).

        Raises:
            ConfigError: The CRF needs the liver's probabilities: a run of LiTS' classes (no ``label_mapping``).
            DataError: As :meth:`predict`.
        """
        if self.label_mapping is not None or not applies_to(self.labels):
            has = "maps another model's classes (--labels)" if self.label_mapping is not None else \
                "has classes " + ", ".join(f"{k} {v}" for k, v in self.labels.items())
            raise ConfigError(f"the dense CRF needs a run of LiTS' classes (liver 1, tumor 2); this prediction {has}")
        return self._checked(volume, crf)

    def _checked(self, volume: Volume, crf_candidate: CrfSettings | None) -> tuple[Volume, Volume | None, dict]:
        """:meth:`_predict_labels` between the scan checks (before the network, and on its label map)."""
        checks = ScanChecks(plan=self.plan, strict=self.settings.strict) if self.settings.scan_checks else None
        findings = checks.before(volume) if checks is not None else []
        labels, refined, stats = self._predict_labels(volume, crf_candidate)
        if checks is not None:
            findings += checks.after(volume, labels)
        stats["warnings"] = [*stats.get("warnings", ()), *findings]
        return labels, refined, stats

    def _predict_labels(self, volume: Volume, crf_candidate: CrfSettings | None = None
                        ) -> tuple[Volume, Volume | None, dict[str, Any]]:
        """The label map and, with ``crf_candidate``, the same refined by that CRF instead of the settings' own
        (``None`` otherwise), from one network pass; the run statistics."""
        logits, record, stats = self.predict_logits(volume)
        t0 = time.perf_counter()
        if self.settings.probabilities:
            stats["probability_maps"] = self._probability_maps(logits, record, volume)
        labels = restore_labels(logits, record)
        config = self.settings.postprocessing or self.postprocessing
        if crf_candidate is not None:
            config = replace(config, crf=None)
        refined = crf_labels(labels, logits, record, volume, crf_candidate) if crf_candidate is not None else None
        if config.crf is not None and self.label_mapping is None and applies_to(self.labels):  # in the liver box
            labels = crf_labels(labels, logits, record, volume, config.crf)
        del logits
        out = self._finish(labels, volume, config)
        refined = None if refined is None else self._finish(refined, volume, config)
        stats["restore_postprocess_s"] = time.perf_counter() - t0
        return out, refined, stats

    def _finish(self, labels: Any, volume: Volume, config: PostprocessConfig) -> Volume:
        """``labels`` (the restored argmax on the scan's grid) read as LiTS' classes and post-processed."""
        names = dict(self.labels)
        if self.label_mapping is not None:  # another tool's classes as LiTS' (--labels liver=5)
            labels, names = apply_label_mapping(labels, self.label_mapping), lits_labels()
        if applies_to(names):
            labels = postprocess_labels(labels, spacing_mm=volume.spacing_mm, config=config, affine=volume.affine)
        return volume.with_array(labels, kind="label", labels=names)

    def _probability_maps(self, logits: torch.Tensor, record: Any, volume: Volume) -> dict[str, Any]:
        """uint8 liver/tumor/uncertainty maps on the scan's grid (LiTS labels only; else none, logged)."""
        from medseg.inference.probability_maps import probability_maps

        if self.label_mapping is not None:
            return probability_maps(mapped_scores(logits, self.label_mapping), record)
        if not applies_to(self.labels):
            logger.warning("probability maps need the LiTS labels (liver, tumor); this run has %s", self.labels)
            return {}
        return probability_maps(logits, record)

    def predict_probabilities(self, volume: Volume) -> Volume:
        """Softmax probabilities ``(K, X0, Y0, Z0)`` float32 on the scan's grid (no post-processing).

        Memory: ``K * 4`` bytes per scan voxel; use :meth:`__call__` for labels of large scans.
        """
        logits, record, _ = self.predict_logits(volume)
        return volume.with_array(restore_probabilities(logits, record), kind="probabilities")

    def _with_tta(self, network: torch.nn.Module):
        """``network`` wrapped for mirroring test-time augmentation when the settings ask for it and the run
        was trained with mirroring (over the axes it mirrored)."""
        if not self.settings.tta or self.mirror_axes == ():
            return network
        return mirrored(network, spatial_dims=len(self.patch_size), axes=self.mirror_axes)

    def _fine_passes(self, networks: list[torch.nn.Module], image: torch.Tensor, window: WindowSettings,
                     box: Any, c2f: CoarseToFineSettings | None, *, spacing_mm: Sequence[float], mask: Any,
                     affine: Any = None) -> tuple[torch.Tensor, dict[str, Any]]:
        """The full-resolution pass of each network (one fold at a time; from the coarse ``box`` in
        coarse-to-fine mode): one network's logits, or the folds' log mean probabilities with their
        agreement (``stats["uncertainty"]``)."""
        folds = FoldMean(spacing_mm=spacing_mm, affine=affine) if len(networks) > 1 else None
        per_fold = []
        for network in networks:
            t0 = time.perf_counter()
            fine = self._with_tta(network)
            if c2f is None:
                logits, steps = predict_logits(fine, image, window, mask=mask), {"box": None, "rounds": 1}
            else:
                logits, steps = refine_or_predict(fine, image, window, box, c2f, spacing_mm=spacing_mm, mask=mask,
                                                  affine=affine)
            per_fold.append({**steps, "fine_s": time.perf_counter() - t0})
            if folds is not None:
                folds.add(logits)
                del logits
                release_freed_memory()  # the fold's blend, before the next fold's (see medseg.utils.memory)
        stats = _fine_steps(per_fold)
        if folds is None:
            return logits, stats
        stats["uncertainty"] = folds.agreement()
        return folds.log_mean_probabilities(), stats

    def predict_logits(self, volume: Volume) -> tuple[torch.Tensor, Any, dict[str, Any]]:
        """Logits ``(K, X, Y, Z)`` on the preprocessed grid, the preprocessing record and statistics."""
        if volume.array.ndim != 3:
            raise DataError(f"expected a 3D scan, got shape {volume.shape}", path=volume.meta.get("path"))
        s = self.settings
        precision = resolve_precision(s.precision, self.device)
        runtime = resolve_runtime(s.runtime, self.device)
        stats: dict[str, Any] = {"mode": s.mode, "runtime": runtime, "precision": precision,
                                 "threads": torch.get_num_threads()}
        t0 = time.perf_counter()
        threshold = s.air_threshold_hu if s.skip_air else None
        image, record, mask = prepare_input(volume, self.plan, air_threshold_hu=threshold)
        image = torch.from_numpy(image)[None]
        stats["preprocess_s"] = time.perf_counter() - t0
        networks = self._runtime_networks(runtime, precision, channels=image.shape[0])
        if s.tta and self.mirror_axes == ():
            logger.warning("tta: the network was trained without mirroring; predicting without test-time augmentation")
        batch_size = s.batch_size or (2 if len(self.patch_size) == 3 else 16)
        window = WindowSettings(patch_size=self.patch_size, num_classes=self.num_classes, overlap=s.overlap,
                                batch_size=batch_size, context_slices=self.context_slices, box_windows=s.fine_windows,
                                device=self.device, amp=s.amp, progress=s.progress,
                                cpu_bfloat16=precision == "bfloat16" and runtime == "torch",
                                layout=getattr(self.plan, "window_layout", "monai"))  # fmt: skip
        c2f = s.coarse_to_fine() if s.mode == "coarse-to-fine" else None
        box, grid_affine = None, getattr(record, "resampled_affine", None)  # volumes from |det| (tilted scans)
        if c2f is not None:  # one coarse pass, by all the folds together
            box, steps = locate_box(networks, image, window, c2f, spacing_mm=record.spacing_after_mm, mask=mask,
                                    affine=grid_affine)
            stats.update(steps)
        logits, steps = self._fine_passes(networks, image, window, box, c2f, spacing_mm=record.spacing_after_mm,
                                          mask=mask, affine=grid_affine)  # fmt: skip
        stats.update(steps)
        stats["preprocessed_shape"] = list(record.resampled_shape)
        release_freed_memory()  # the blends' and the coarse pass's buffers, before restoring to the scan grid
        return logits, record, stats

    def _runtime_networks(self, runtime: str, precision: str, *, channels: int) -> list[Any]:
        """The network of each fold as ``runtime`` computes it: the modules themselves for PyTorch; for
        OpenVINO each converted (or read from the cache) and compiled, once per predictor."""
        networks = list(self.network.folds) if self.members > 1 else [self.network]
        if runtime == "torch":
            return networks
        from medseg.inference.runtime_openvino import openvino_networks

        shape = network_input_shape(channels, self.patch_size, self.context_slices)
        return openvino_networks(networks, input_shape=shape, precision=precision, cache_dir=self.settings.cache_dir,
                                 memo=self.compiled)


def _fine_steps(per_fold: list[dict[str, Any]]) -> dict[str, Any]:
    """The fine passes' statistics: one fold's as they are; an ensemble's ``box`` is the union of the folds'
    final boxes (``None`` if one predicted the whole scan), ``rounds`` and ``fine_s`` their sums, and
    ``fold_boxes`` and ``fold_rounds`` per fold."""
    if len(per_fold) == 1:
        return per_fold[0]
    boxes = [steps["box"] for steps in per_fold]
    union = None if any(b is None for b in boxes) else [
        [min(b[a][0] for b in boxes), max(b[a][1] for b in boxes)] for a in range(len(boxes[0]))]
    return {"box": union, "rounds": sum(steps["rounds"] for steps in per_fold),
            "fine_s": sum(steps["fine_s"] for steps in per_fold), "fold_boxes": boxes,
            "fold_rounds": [steps["rounds"] for steps in per_fold]}


def _check_same_model_grid(first: Predictor, other: Predictor) -> None:
    """Refuse to ensemble runs that do not predict the same classes on the same grid (one line)."""
    name = other.sources[0] if other.sources else "a run"
    ref = first.sources[0] if first.sources else "the first run"
    for what, a, b in (("preprocessing plan", _plan_dict(first.plan), _plan_dict(other.plan)),
                       ("patch size", tuple(first.patch_size), tuple(other.patch_size)),
                       ("number of classes", first.num_classes, other.num_classes),
                       ("labels", first.labels, other.labels),
                       ("2.5D context slices", first.context_slices, other.context_slices),
                       ("mirrored axes", first.mirror_axes, other.mirror_axes)):  # fmt: skip
        if a != b:
            raise DataError(f"cannot ensemble: its {what} ({b}) differs from {ref}'s ({a})", path=name)


def _plan_dict(plan: PreprocessingPlan | ScanPlan) -> dict[str, Any]:
    return plan.to_dict()

