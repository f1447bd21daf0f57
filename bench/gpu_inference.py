"""GPU inference of the shipped model: onnxruntime CUDA (IO binding, fp32 and fp16) vs torch eager and
torch.compile (bf16), at batch 256. Needs an NVIDIA GPU; exits with a message (status 2) without one.

    .venv/bin/python bench/gpu_inference.py [--batch 256] [--iterations 20] [--checkpoint runs/.../checkpoint.pt]

Setup on a GPU machine (the dev environment has the CPU builds):

    pip uninstall -y onnxruntime && pip install onnxruntime-gpu      # CUDA 12 + cuDNN 9 on the machine
    pip install torch torchvision --index-url https://download.pytorch.org/whl/cu126
    pip install -e '.[trainer]'                                       # timm, to build the torch model

Every variant runs the same network on the same batch of real Kaggle slices, preprocessed by the
engine, and returns what screening needs (``logits`` and ``features``):

- ``ort-cuda-fp32``: the shipped ONNX on the CUDA execution provider, input and outputs bound on the
  GPU with IO binding (no host copies inside the timed loop);
- ``ort-cuda-fp16``: the same graph converted to fp16 inside (inputs and outputs stay fp32), IO binding;
- ``torch-eager-fp32`` and ``torch-eager-bf16`` (autocast), channels-last;
- ``torch-compile-bf16``: ``torch.compile`` (default mode) of the bf16 model; compile time is reported apart.

Reported: images/s (median of ``--iterations`` timed runs after warm-up, CUDA synchronised), the
speed-up against ``ort-cuda-fp32``, and each variant's top-1 agreement and largest probability
difference against the CPU fp32 onnxruntime result. Writes ``bench/results/gpu_inference.md``.
No figure is written unless it was measured on a GPU.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from brainscan.engine.input.discovery import discover
from brainscan.engine.input.loading import load_frame
from brainscan.engine.model.inference import Classifier, softmax
from brainscan.engine.model.preprocess import to_model_input
from brainscan.engine.resources import default_model_path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "brain-tumor-mri" / "Training"
CUDA = "CUDAExecutionProvider"


def no_gpu(reason: str) -> None:
    print(f"gpu_inference: no CUDA device available ({reason}); nothing measured. "
          "Run this on a machine with an NVIDIA GPU, onnxruntime-gpu and a CUDA build of torch (see --help).",
          file=sys.stderr)
    sys.exit(2)


def real_batch(model: Path, size: int, data: Path = DATA) -> np.ndarray:
    every = sorted(data.glob("*/*.jpg"))
    if not every:
        print(f"gpu_inference: no Kaggle images under {data}; using random pictures", file=sys.stderr)
        pictures = list(np.random.default_rng(0).integers(0, 256, (size, 224, 224, 3), dtype=np.uint8))
    else:
        files = [every[i * len(every) // size] for i in range(size)]
        pictures = [load_frame(ref).picture for ref in discover(files)]
    return to_model_input(pictures, Classifier(model, device="cpu").contract)


def timed(run: Callable[[], object], sync: Callable[[], None], iterations: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        run()
    sync()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# -- onnxruntime ---------------------------------------------------------------------------------------
def ort_cuda(path: Path, batch: np.ndarray) -> tuple[Callable[[], None], Callable[[], np.ndarray]]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(
        str(path), options, providers=[(CUDA, {"device_id": 0, "cudnn_conv_algo_search": "EXHAUSTIVE"}),
                                        "CPUExecutionProvider"])
    if session.get_providers()[0] != CUDA:
        no_gpu(f"onnxruntime could not start its CUDA provider for {path.name} (providers: {session.get_providers()})")
    binding = session.io_binding()
    device_input = ort.OrtValue.ortvalue_from_numpy(batch, "cuda", 0)
    binding.bind_ortvalue_input(session.get_inputs()[0].name, device_input)
    for name in ("logits", "features"):
        binding.bind_output(name, "cuda", 0)

    def run() -> None:
        session.run_with_iobinding(binding)

    def logits() -> np.ndarray:
        return binding.get_outputs()[0].numpy()

    return run, logits


def fp16_copy(path: Path, folder: Path) -> Path:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True)
    target = folder / "fp16.onnx"
    onnx.save(model, str(target))
    return target


# -- torch -----------------------------------------------------------------------------------------------
def torch_model(checkpoint: Path | None, classes: int):
    import torch

    from trainer.model import create_model

    if checkpoint is not None and checkpoint.is_file():
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model = create_model(saved["config"]["architecture"], classes, weights="none")
        model.load_state_dict(saved["state_dict"])
        note = f"weights from {checkpoint}"
    else:
        model = create_model("tf_efficientnet_lite0", classes, weights="none")
        note = "random weights (no checkpoint): timing only, agreement not meaningful"
    return model.eval().cuda().to(memory_format=torch.channels_last), note


def torch_runner(model, batch_gpu, dtype, compiled: bool):
    import torch

    def forward(x):
        features = model.forward_features(x)
        return model.forward_head(features), features

    function = torch.compile(forward) if compiled else forward
    outputs: dict[str, object] = {}

    @torch.inference_mode()
    def run() -> None:
        if dtype is None:
            outputs["logits"], _ = function(batch_gpu)
        else:
            with torch.autocast("cuda", dtype=dtype):
                outputs["logits"], _ = function(batch_gpu)

    def logits() -> np.ndarray:
        return outputs["logits"].float().cpu().numpy()

    return run, logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--model", type=Path, default=default_model_path())
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "runs" / "lite0-224-v0.1.0" / "checkpoint.pt")
    parser.add_argument("--no-torch", action="store_true", help="onnxruntime only")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu_inference.md")
    parser.add_argument("--data", type=Path, default=DATA, help="class folders of Kaggle pictures for the batch")
    args = parser.parse_args()
    if hasattr(ort, "preload_dlls"):  # onnxruntime-gpu finds CUDA and cuDNN in torch's nvidia-* packages
        ort.preload_dlls()
    ort_has_cuda = CUDA in ort.get_available_providers()
    if not ort_has_cuda:
        print(f"gpu_inference: this onnxruntime has no CUDA provider (available: "
              f"{', '.join(ort.get_available_providers())}): install onnxruntime-gpu for its rows; torch rows only",
              file=sys.stderr)
    batch = real_batch(args.model, args.batch, args.data)
    classes = Classifier(args.model, device="cpu").classes
    reference_session = ort.InferenceSession(str(args.model), providers=["CPUExecutionProvider"])
    reference = softmax(reference_session.run(["logits"], {reference_session.get_inputs()[0].name: batch})[0])

    rows: list[tuple[str, float, np.ndarray, str]] = []  # name, seconds per batch, logits, note

    def cuda_sync() -> None:  # run_with_iobinding returns once the GPU work is done (ORT synchronises)
        return None

    with tempfile.TemporaryDirectory(prefix="brainscan-gpu-") as scratch:
        for name, path in (("ort-cuda-fp32", args.model), ("ort-cuda-fp16", None)) if ort_has_cuda else ():
            path = path or fp16_copy(args.model, Path(scratch))
            run, logits = ort_cuda(path, batch)
            rows.append((name, timed(run, cuda_sync, args.iterations), logits(), "IO binding"))
    device_name = "CUDA device"
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            print("gpu_inference: torch is not installed; no torch rows", file=sys.stderr)
        else:
            if not torch.cuda.is_available():
                print("gpu_inference: this torch has no CUDA; no torch rows", file=sys.stderr)
            else:
                device_name = torch.cuda.get_device_name(0)
                torch.backends.cudnn.benchmark = True
                model, note = torch_model(args.checkpoint, len(classes))
                batch_gpu = torch.from_numpy(batch).cuda().to(memory_format=torch.channels_last)
                for name, dtype, compiled in (("torch-eager-fp32", None, False), ("torch-eager-bf16", torch.bfloat16, False),
                                              ("torch-compile-bf16", torch.bfloat16, True)):
                    run, logits = torch_runner(model, batch_gpu, dtype, compiled)
                    started = time.perf_counter()
                    run()
                    torch.cuda.synchronize()
                    first = time.perf_counter() - started
                    extra = f"; first call {first:.1f} s (compile)" if compiled else ""
                    rows.append((name, timed(run, torch.cuda.synchronize, args.iterations), logits(), note + extra))

    if not rows:
        no_gpu("neither onnxruntime-gpu nor a CUDA build of torch is usable here")
    base = rows[0][1]
    seconds_of = {name: seconds for name, seconds, _, _ in rows}
    lines = [
        "# GPU inference of the shipped model",
        "",
        f"{device_name}; onnxruntime {ort.__version__}; {platform.platform()}; batch {args.batch} real Kaggle slices; "
        f"median of {args.iterations} runs after warm-up.",
        "",
        f"| variant | images/s | vs {rows[0][0]} | top-1 agreement with CPU fp32 | largest probability difference | notes |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, seconds, logits, note in rows:
        probabilities = softmax(logits.astype(np.float64))
        agree = float(np.mean(probabilities.argmax(1) == reference.argmax(1)))
        diff = float(np.max(np.abs(probabilities - reference)))
        lines.append(f"| {name} | {args.batch / seconds:.0f} | {base / seconds:.2f} | {agree:.4f} | {diff:.2e} | {note} |")
    if "ort-cuda-fp32" in seconds_of and "torch-compile-bf16" in seconds_of:
        ratio = seconds_of["torch-compile-bf16"] / seconds_of["ort-cuda-fp32"]
        lines += ["", f"onnxruntime CUDA (fp32, IO binding) against torch.compile (bf16): **{ratio:.2f}x** "
                      "(issue 14 asks for at least 0.6x)."]
    elif not ort_has_cuda:
        lines += ["", "onnxruntime CUDA: not measured (this onnxruntime has no CUDA provider; install onnxruntime-gpu)."]
    lines += ["", f"Command: `.venv/bin/python bench/gpu_inference.py --batch {args.batch} --iterations {args.iterations}`"]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
