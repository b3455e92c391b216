"""What runs the model at inference: PyTorch eager (``torch``), ``torch.compile`` (``compile``) or ONNX Runtime
(``onnxruntime``). Each engine is a callable from normalised (N, C, H, W) float images to logits, so scales, flip
and sliding windows (``models.inference``) work on all of them alike.

The ONNX Runtime engine's graph is written by export.py's code path (``io.onnx.write_graph``, on the model without
the 0-255 wrapper), once: it is kept beside the checkpoint or in the model folder under ``onnx/``, named by the hash
of the weights and hyper-parameters, the opset and the torch version, and reused while they are unchanged. Before a
graph is kept it must give the probabilities PyTorch gives (within ``TOLERANCE``) at two sizes and batches.
``auto`` picks ONNX Runtime where it is installed and the model exports in seconds (the TorchScript exporter; on this
project's CPU it runs the default model about twice as fast as eager PyTorch: ``benchmarks/inference.py``), else
PyTorch, and says which in the log; ``engine=onnxruntime`` also takes the models only ``torch.export`` can write
(ViTs: minutes, once).
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from segmodels.models.lora import merge_lora
from segmodels.registry import Registry

from .onnx import write_graph

log = logging.getLogger(__name__)
TOLERANCE = 1e-4  # largest |difference| of class probabilities a kept graph may show against PyTorch (float32)
Engine = Callable[[torch.Tensor], torch.Tensor]
ENGINES: Registry = Registry("engine")


@ENGINES.register("torch")
def torch_engine(module, source: Path | None, **options) -> Engine:
    """The model itself, eager."""
    return module.model.eval()


@ENGINES.register("compile")
def compile_engine(module, source: Path | None, **options) -> Engine:
    """``torch.compile`` of the model (the first call of each input shape compiles; later ones are fast)."""
    return torch.compile(module.model.eval())


def weights_key(model: nn.Module, hparams: dict, opset: int | None) -> str:
    """A short hash of everything that makes a graph: every tensor of the state dict, the hyper-parameters, the
    opset and torch's version (its exporter writes the graph)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    digest.update(json.dumps(hparams, sort_keys=True, default=str).encode())
    digest.update(f"{opset}|{torch.__version__}".encode())
    return digest.hexdigest()[:16]


def graph_folder(source: Path | None) -> Path:
    """``onnx/`` beside a checkpoint or inside a model folder; the user's cache when there is no file."""
    if source is None:
        return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "segmodels" / "onnx"
    source = Path(source)
    return (source if source.is_dir() else source.parent) / "onnx"


def check_providers(providers: Sequence[str]) -> None:
    """Refuse execution providers this onnxruntime lacks, naming the build that has them."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    missing = [p for p in providers if p not in available]
    if missing:
        raise ValueError(f"providers={list(providers)}: {', '.join(missing)} is not in this onnxruntime (available: "
                         f"{', '.join(available)}); install the onnxruntime build that has it (onnxruntime-gpu for "
                         f"CUDAExecutionProvider and TensorrtExecutionProvider, onnxruntime-openvino for "
                         f"OpenVINOExecutionProvider) or leave providers unset")


class OnnxRuntimeModel:
    """An ONNX Runtime session called like the model: torch images in, torch logits out, on the images' device."""

    def __init__(self, path: Path, providers: Sequence[str], threads: int | None = None,
                 log_scores: bool = False) -> None:
        import onnxruntime as ort

        self.log_scores = log_scores  # as the model's: how overlapping windows average its output
        check_providers(providers)
        settings = ort.SessionOptions()
        if threads:
            settings.intra_op_num_threads = threads
        self.path = path
        self.session = ort.InferenceSession(str(path), settings, providers=list(providers))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        (logits,) = self.session.run(None, {"image": images.detach().float().cpu().numpy()})
        return torch.from_numpy(logits).to(images.device)


def check_graph(runner: Engine, model: nn.Module, channels: int, path: Path) -> float:
    """The largest difference of class probabilities between ``runner`` and ``model``, at two sizes and batches;
    raises when it passes ``TOLERANCE``."""
    generator = torch.Generator().manual_seed(0)
    gap = 0.0
    for shape in ((1, channels, 64, 64), (2, channels, 45, 77)):
        x = torch.randn(*shape, generator=generator)
        with torch.no_grad():
            expected = model(x).float().softmax(1)
        actual = runner(x).float().softmax(1)
        if actual.shape != expected.shape:
            raise RuntimeError(f"{path}: ONNX Runtime returned {tuple(actual.shape)} for {tuple(x.shape)}, PyTorch "
                               f"{tuple(expected.shape)}")
        gap = max(gap, float((actual - expected).abs().max()))
    if gap > TOLERANCE:
        raise RuntimeError(f"{path}: ONNX Runtime's probabilities differ from PyTorch's by up to {gap:.2e} (more than "
                           f"{TOLERANCE:g}); use engine=torch for this model")
    return gap


@ENGINES.register("onnxruntime")
def onnxruntime_engine(module, source: Path | None, opset: int | None = None, providers: Sequence[str] | None = None,
                       threads: int | None = None, dynamo: bool = True) -> Engine:
    """ONNX Runtime on the model's graph, exported and checked once, then read from ``onnx/`` (see the module)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as error:
        raise ImportError("engine=onnxruntime needs onnxruntime and onnx: pip install -e '.[export]'") from error
    model = merge_lora(module.model).eval()
    if next(model.parameters()).device.type != "cpu":  # exported and checked on the CPU; the module stays where it is
        model = copy.deepcopy(model).cpu()
    folder = graph_folder(source)
    path = folder / f"model-{weights_key(model, dict(module.hparams), opset)}-opset{opset or 'default'}.onnx"
    providers = list(providers or ["CPUExecutionProvider"])
    check_providers(providers)
    if path.is_file():
        log.info("engine onnxruntime: reusing %s", path)
        return OnnxRuntimeModel(path, providers, threads, model.log_scores)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(suffix=".onnx", dir=folder)  # renamed when checked: no reader sees half
    except OSError as error:  # a read-only checkpoint folder: the user's cache instead, said
        cache = graph_folder(None)
        log.info("engine onnxruntime: %s is not writable (%s); the graph goes to %s", folder, error.strerror, cache)
        cache.mkdir(parents=True, exist_ok=True)
        path = cache / path.name
        if path.is_file():
            return OnnxRuntimeModel(path, providers, threads, model.log_scores)
        handle, partial = tempfile.mkstemp(suffix=".onnx", dir=cache)
    os.close(handle)
    try:
        trace = torch.randn(2, module.hparams.in_channels, 64, 64)
        exporter = write_graph(model, trace, Path(partial), opset, dynamo)
        runner = OnnxRuntimeModel(Path(partial), ["CPUExecutionProvider"], threads)
        gap = check_graph(runner, model, module.hparams.in_channels, path)
        os.replace(partial, path)
    finally:
        Path(partial).unlink(missing_ok=True)
    log.info("engine onnxruntime: wrote %s (%s exporter; probabilities within %.1e of PyTorch's)", path, exporter, gap)
    return OnnxRuntimeModel(path, providers, threads, model.log_scores)


def installed(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def inference_engine(module, engine: str = "auto", source: str | Path | None = None, opset: int | None = None,
                     providers: Sequence[str] | None = None, threads: int | None = None) -> tuple[Engine, str]:
    """The callable that runs ``module``'s model, and the engine's name. ``auto``: ONNX Runtime when installed (a
    model it cannot run exactly falls back to PyTorch, with a warning naming why), else PyTorch."""
    source = Path(source) if source else None
    options = {"opset": opset, "providers": providers, "threads": threads}
    if engine != "auto":
        return ENGINES.get(engine)(module, source, **options), engine
    if not (installed("onnxruntime") and installed("onnx")):
        log.info("engine torch (auto: onnxruntime is not installed; pip install -e '.[export]' for the faster one)")
        return torch_engine(module, source), "torch"
    if module.device.type == "cuda" and not providers:
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            log.info("engine torch (auto: on a GPU, and this onnxruntime has no CUDAExecutionProvider)")
            return torch_engine(module, source), "torch"
        options["providers"] = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    try:
        runner = onnxruntime_engine(module, source, **options, dynamo=False)  # minutes of export: not by default
    except Exception as error:  # a model the exporter or the check refuses: said, then the exact eager path
        log.warning("engine torch (auto: onnxruntime cannot run this model exactly: %s)", str(error)[:300])
        return torch_engine(module, source), "torch"
    log.info("engine onnxruntime (auto: the fastest exact engine installed; engine=torch for eager PyTorch)")
    return runner, "onnxruntime"

