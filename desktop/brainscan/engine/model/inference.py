"""onnxruntime inference behind the model contract.

:class:`Classifier` opens a model file, reads and checks its contract, picks the execution
provider (``auto | cuda | cpu``) and reports the one actually used. :meth:`Classifier.predict`
returns, per picture, the class probabilities and the feature maps that make Grad-CAM exact
(:mod:`brainscan.engine.model.cam`), so changing the CAM class or method never re-runs the network.
On the CPU the session opens from the graph onnxruntime optimised for this machine before
(:mod:`brainscan.engine.model.optimised_models`), once the file's bytes are the ones it came from.
:meth:`Classifier.predict` may run from several threads at once (screening's lanes).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from brainscan.engine.errors import DeviceError, ModelError
from brainscan.engine.model import optimised_models
from brainscan.engine.model.contract import (
    CAM_WEIGHT,
    DOMAIN_SCORE,
    FEATURES,
    HEAD_MAPS,
    LOGITS,
    ModelContract,
    TensorSpec,
    check_graph,
)
from brainscan.engine.model.integrity import file_sha256, recorded_checksum, verify_weights
from brainscan.engine.model.preprocess import to_model_input

DEVICES = ("auto", "cuda", "cpu")
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class DeviceReport:
    """Which device was asked for, which providers the session really uses, and why."""

    requested: str
    providers: tuple[str, ...]
    note: str = ""

    @property
    def used(self) -> str:
        return "cuda" if self.providers and self.providers[0] == _CUDA else "cpu"

    def describe(self) -> str:
        text = f"{self.used.upper()} ({', '.join(self.providers)})"
        return f"{text}: {self.note}" if self.note else text


@dataclass(frozen=True)
class Prediction:
    """One picture's result: probabilities (K), logits (K) and the CAM feature maps (C x h x w).

    With a model that carries them: ``head_maps`` (K x h' x w', the explanation head's class maps)
    and ``domain_score`` (the domain guard's distance over its threshold: at most 1 is in domain).
    """

    probabilities: np.ndarray
    logits: np.ndarray
    features: np.ndarray
    head_maps: np.ndarray | None = None
    domain_score: float | None = None

    @property
    def label_index(self) -> int:
        return int(np.argmax(self.probabilities))

    @property
    def confidence(self) -> float:
        return float(np.max(self.probabilities))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _choose_providers(device: str) -> tuple[list[str], str]:
    if device not in DEVICES:
        raise DeviceError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    available = ort.get_available_providers()
    if device == "cpu":
        return [_CPU], ""
    if _CUDA in available:
        return [_CUDA, _CPU], ""
    if device == "cuda":
        return [_CPU], (
            "CUDA was requested but this onnxruntime build has no CUDA provider "
            f"(available: {', '.join(available)}); install onnxruntime-gpu instead of onnxruntime "
            "to use an NVIDIA GPU. Running on the CPU."
        )
    return [_CPU], ""


def _session_options(threads: int | None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return options


class Classifier:
    """A checked ONNX model ready to classify 8-bit pictures.

    Parameters
    ----------
    model_path:
        An ONNX file exported by the trainer (it carries its contract).
    device:
        ``"auto"`` (CUDA when onnxruntime can use it, else CPU), ``"cuda"`` or ``"cpu"``.
    threads:
        onnxruntime intra-op threads (default: onnxruntime's choice, one per core).
    allow_unverified:
        Open a model whose contract records no ``weights_sha256`` (its :attr:`integrity` is then
        :data:`~brainscan.engine.model.integrity.UNVERIFIED`); by default such a model is refused.

    Raises
    ------
    UnverifiedModelError
        The contract records no weights checksum and ``allow_unverified`` is false.
    ModelError
        The file is missing, not ONNX, has no contract, its graph does not match the contract,
        or its weights do not match the ``weights_sha256`` its contract records.
    DeviceError
        The device name is unknown.
    """

    def __init__(
        self, model_path: str | Path, device: str = "auto", threads: int | None = None, *, allow_unverified: bool = False
    ) -> None:
        self.model_path = Path(model_path)
        self.threads = threads  # onnxruntime's intra-op threads; None: its own choice (one per core)
        self._sha256: str | None = None  # of the whole file: computed once, for the card and the checksum cache
        if not self.model_path.is_file():
            raise ModelError(
                f"{self.model_path}: model file not found; pass an exported .onnx with --model "
                "(the shipped default lives in resources/models/)"
            )
        providers, note = _choose_providers(device)
        saving = self._open_session(providers, threads)
        checked = False
        if self.session_source != self.model_path:
            try:
                self._check(allow_unverified)
                checked = True
            except ModelError:  # the copy disagrees with the contract (damaged): checked again from the file
                optimised_models.discard(self.session_source)
                saving = self._open_session(providers, threads)
        used = tuple(self.session.get_providers())
        if device in ("auto", "cuda") and _CUDA in providers and (not used or used[0] != _CUDA):
            note = (
                "CUDA was requested and onnxruntime-gpu is installed, but the CUDA provider could not start "
                "(the CUDA and cuDNN libraries it needs are missing or do not match); running on the CPU."
            )
        self.device = DeviceReport(requested=device, providers=used, note=note)
        try:
            if not checked:
                self._check(allow_unverified)
        except BaseException:
            if saving is not None:  # not kept for a model that was refused
                optimised_models.discard(saving[0])
            raise
        if saving is not None:  # checked: keep the graph onnxruntime optimised for the next start
            optimised_models.keep(*saving)
        self.input_name = self.session.get_inputs()[0].name
        self.temperature = calibration_temperature(self.contract.metrics)
        self._cam_weight: np.ndarray | None = None

    def _check(self, allow_unverified: bool) -> None:
        """Read the contract, check it against the graph and the weights against its checksum."""
        source = str(self.model_path)
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.contract = ModelContract.from_metadata(metadata, source=source)
        check_graph(
            self.contract,
            [TensorSpec(i.name, i.shape) for i in self.session.get_inputs()],
            [TensorSpec(o.name, o.shape) for o in self.session.get_outputs()],
            source=source,
        )
        # "verified", or "unverified (no checksum in contract)" when allowed; altered weights raise ModelError
        self.integrity = verify_weights(self.model_path, metadata, allow_unverified=allow_unverified,
                                        file_digest=self.sha256 if recorded_checksum(metadata) else None)

    def _open_session(self, providers: list[str], threads: int | None) -> tuple[Path, Path] | None:
        """Open :attr:`session`: on the CPU from the optimised copy this machine kept of these very bytes
        (:mod:`~brainscan.engine.model.optimised_models`), else from the file, saving the optimised graph
        (returned as (saved, its place) for the caller to keep once the model is checked).

        Raises
        ------
        ModelError
            The file is not a usable ONNX model.
        """
        saving: tuple[Path, Path] | None = None
        if providers == [_CPU]:
            try:
                digest = self.sha256
            except OSError as exc:
                raise ModelError(f"{self.model_path}: cannot be read ({exc.strerror or exc}); check its permissions "
                                 "or pass another model with --model") from exc
            target = optimised_models.optimised_path(digest)
            if target.is_file():
                options = _session_options(threads)
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
                try:
                    self.session = ort.InferenceSession(os.fspath(target), sess_options=options, providers=providers)
                    self.session_source = target
                    return None
                except Exception:  # a damaged copy: dropped, the original opened and optimised again
                    optimised_models.discard(target)
            saved = optimised_models.saving_path(target)
            saving = (saved, target) if saved is not None else None
        options = _session_options(threads)
        if saving is not None:
            options.optimized_model_filepath = os.fspath(saving[0])
        try:
            self.session = ort.InferenceSession(os.fspath(self.model_path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            if saving is not None:
                optimised_models.discard(saving[0])
            raise ModelError(
                f"{self.model_path}: not a usable ONNX model ({type(exc).__name__}: {str(exc)[:200]}); "
                "the file may be truncated or not a model: re-export or re-download it"
            ) from exc
        self.session_source = self.model_path
        if saving is not None and not saving[0].is_file():
            saving = None
        return saving

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = file_sha256(self.model_path)
        return self._sha256

    @property
    def classes(self) -> tuple[str, ...]:
        return self.contract.classes

    @property
    def cam_weight(self) -> np.ndarray:
        """The classifier weight (K x C) that makes Grad-CAM exact; read from the graph once."""
        if self._cam_weight is None:
            height, width = self.contract.input_size
            dummy = np.zeros((1, 3, height, width), dtype=np.float32)
            (self._cam_weight,) = self.session.run([CAM_WEIGHT], {self.input_name: dummy})
        return self._cam_weight

    @property
    def optional_outputs(self) -> tuple[str, ...]:
        """The extra outputs the contract describes: the head's maps, the guard's score."""
        c = self.contract
        return (*((HEAD_MAPS,) if c.explanation else ()), *((DOMAIN_SCORE,) if c.domain_guard else ()))

    def run_outputs(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Raw outputs: logits, features and the optional outputs by name."""
        extra = self.optional_outputs
        logits, features, weight, *rest = self.session.run(
            [LOGITS, FEATURES, CAM_WEIGHT, *extra], {self.input_name: tensor}
        )
        if self._cam_weight is None:
            self._cam_weight = weight
        return logits, features, dict(zip(extra, rest, strict=True))

    def predict(self, pictures: list[np.ndarray]) -> list[Prediction]:
        """Classify 8-bit RGB pictures (any size).

        Applies the contract's test-time augmentation and its calibration: the probabilities are
        ``softmax(logits / T)`` with the temperature fitted on validation when the contract records
        one (``metrics.calibration.temperature``), else T = 1. The top class is the same either way;
        ``logits`` are returned as the graph gives them.
        """
        if not pictures:
            return []
        tensor = to_model_input(pictures, self.contract)
        count = len(pictures)
        t = self.temperature
        if "hflip" in self.contract.test_time_augmentation:
            # the logits of the picture and its mirror are averaged (as the trainer's evaluation does)
            logits, features, extra = self.run_outputs(np.concatenate([tensor, tensor[..., ::-1]]))
            logits, features = (logits[:count] + logits[count:]) / 2, features[:count]
            if HEAD_MAPS in extra:
                extra[HEAD_MAPS] = (extra[HEAD_MAPS][:count] + extra[HEAD_MAPS][count:, ..., ::-1]) / 2
            if DOMAIN_SCORE in extra:
                extra[DOMAIN_SCORE] = extra[DOMAIN_SCORE][:count]
        else:
            logits, features, extra = self.run_outputs(tensor)
        probabilities = softmax(logits / t)
        head_maps, scores = extra.get(HEAD_MAPS), extra.get(DOMAIN_SCORE)
        return [
            Prediction(
                probabilities[i], logits[i], features[i],
                head_maps=None if head_maps is None else head_maps[i],
                domain_score=None if scores is None else float(scores[i]),
            )
            for i in range(count)
        ]

    def model_card(self) -> dict[str, object]:
        """What a person needs to judge the model: identity, classes, provenance and metrics."""
        c = self.contract
        return {
            "name": c.name,
            "version": c.version,
            "task": c.task,
            "classes": list(c.classes),
            "architecture": c.architecture,
            "input_size": list(c.input_size),
            "test_time_augmentation": list(c.test_time_augmentation),
            "views_in_graph": list(c.views_in_graph),
            "calibration_temperature": self.temperature,
            "file": str(self.model_path),
            "sha256": self.sha256,
            "metrics": dict(c.metrics),
            "training": dict(c.training),
            "explanation": dict(c.explanation),
            "domain_guard": dict(c.domain_guard),
            "intended_use": c.intended_use,
            "picture": c.picture,
            "integrity": self.integrity,
        }


def calibration_temperature(metrics: Mapping[str, object]) -> float:
    """The temperature a contract's metrics record (``calibration.temperature``), or 1.0.

    Only a finite value in [0.05, 20] is used: anything else would be a damaged contract, and
    screening then shows the uncalibrated probabilities rather than absurd ones.
    """
    calibration = metrics.get("calibration")
    value = calibration.get("temperature") if isinstance(calibration, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 1.0
    value = float(value)
    return value if math.isfinite(value) and 0.05 <= value <= 20.0 else 1.0


def negative_class_index(classes: tuple[str, ...]) -> int | None:
    """The index of the 'no tumour' class, if the model has one (for the tumour probability)."""
    for index, name in enumerate(classes):
        if name.lower().replace("_", "").replace(" ", "") in {"notumor", "notumour", "no", "healthy", "normal"}:
            return index
    return None


def tumour_probability(probabilities: np.ndarray, classes: tuple[str, ...]) -> float:
    """Probability of any tumour: ``1 - p(no tumour)``, or the top probability without such a class."""
    negative = negative_class_index(classes)
    if negative is None:
        return float(np.max(probabilities))
    return float(1.0 - probabilities[negative])
