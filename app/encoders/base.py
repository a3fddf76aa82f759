"""One base class per model role: load on a device, pre/core/post steps, warm-up, serialised calls."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from app.preprocessing import ImageSpec, Inputs, Pixels, Preprocessor, tensors_of

log = logging.getLogger(__name__)


def file_digest(path: Path) -> str:
    """First 16 hex digits of a file's sha256 (the cache key of what is prepared from it)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()[:16]


class Model(ABC):
    """Life cycle shared by every model: load once, warm up, then run one call at a time."""

    model_id: str = "unknown"

    def __init__(self) -> None:
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.lock = threading.Lock()
        self.loaded = False
        self.error: str | None = None  # why a background load failed (app.registry.load_in_background)
        self.seconds_in_inference = 0.0
        self.calls = 0

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        """Load weights onto `device` in `dtype` and warm up with a tiny batch; idempotent."""
        if self.loaded:
            return
        start = time.perf_counter()
        self.device, self.dtype = device, dtype
        self._load()
        self.loaded = True
        loaded = time.perf_counter()
        self.warmup()
        log.info(
            "%s %s ready on %s/%s: load %.1fs, warm-up %.2fs",
            type(self).__name__,
            self.model_id,
            device,
            getattr(self, "precision", str(dtype).removeprefix("torch.")),
            loaded - start,
            time.perf_counter() - loaded,
        )

    @abstractmethod
    def _load(self) -> None:
        """Read the weights (self.device and self.dtype are set)."""

    @abstractmethod
    def warmup(self) -> None:
        """Run one tiny inference so that the first request is not the slow one."""


@dataclass
class ImageOutput:
    """Encoder output for a batch: pooled visual features and, for classifiers, class logits."""

    features: torch.Tensor
    logits: torch.Tensor | None


class ImageEncoder(Model):
    """Image → pooled feature (classifier head removed) and class logits over `labels`."""

    spec: ImageSpec
    labels: list[str] | None = None
    feature_dim: int
    micro_batch: int | None = None  # images per forward (None: the whole batch)
    channels_last: bool = False  # also on the CPU (always on accelerators)
    quantized: bool = False  # the core step runs an int8 model
    label_model: str = ""  # the other classifier whose logits encode() returns; "" for this one's own

    @property
    def precision(self) -> str:
        """What the core step computes in: int8, fp16, bf16 or fp32 (recorded in an index's meta.json)."""
        if self.quantized:
            return "int8"
        return {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(self.dtype, "fp32")

    @property
    def preprocess(self) -> Preprocessor:
        """PIL image → normalised tensor for this encoder's own input (`spec`)."""
        return Preprocessor(self.spec)

    @property
    def specs(self) -> tuple[ImageSpec, ...]:
        """Every input the encoder takes from a picture, `spec` first (one, unless it runs a labeller)."""
        return (self.spec,)

    @property
    def inputs(self) -> Inputs:
        """The pre step: PIL image → what `encode` takes of it (a tensor per entry of `specs`)."""
        return Inputs(self.specs)

    def encode(self, pixels: Pixels) -> ImageOutput:
        """Core step on a (B, 3, S, S) batch; returns float32 CPU tensors."""
        (tensor,) = tensors_of(pixels, 1)
        start = time.perf_counter()
        with self.lock, torch.inference_mode():
            batch = tensor.to(self.device, self.dtype, non_blocking=True)
            if self.channels_last or self.device.type != "cpu":
                batch = batch.contiguous(memory_format=torch.channels_last)
            step = self.micro_batch or len(batch)
            parts = [self._forward(batch[first : first + step]) for first in range(0, len(batch), step)]
            logits = [part[1] for part in parts if part[1] is not None]
            out = ImageOutput(
                features=torch.cat([part[0] for part in parts]).float().cpu(),
                logits=torch.cat(logits).float().cpu() if len(logits) == len(parts) else None,
            )
        self.seconds_in_inference += time.perf_counter() - start
        self.calls += 1
        return out

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pooled features of a batch of the first input alone (`spec`): no labeller runs."""
        return ImageEncoder.encode(self, pixels).features

    @abstractmethod
    def _forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Model-specific forward returning (pooled features, logits or None)."""

    def warmup(self) -> None:
        """Encode blank images: a full micro-batch and a lone one, twice (TorchScript optimises on reuse)."""
        for count in (self.micro_batch or 1, 1) * 2:
            self.encode(torch.zeros(count, 3, self.spec.size, self.spec.size))


class TextEncoder(Model):
    """Texts → L2-normalised embeddings of size `dim`."""

    dim: int

    def encode(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        """Embed texts in batches; returns a float32 (N, dim) array of unit rows."""
        start = time.perf_counter()
        chunks: list[np.ndarray] = []
        with self.lock, torch.inference_mode():
            for first in range(0, len(texts), batch_size):
                vectors = self._forward(texts[first : first + batch_size]).float()
                vectors = torch.nn.functional.normalize(vectors, dim=-1)
                chunks.append(vectors.cpu().numpy())
        self.seconds_in_inference += time.perf_counter() - start
        self.calls += 1
        if not chunks:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32)

    @abstractmethod
    def _forward(self, texts: list[str]) -> torch.Tensor:
        """Model-specific embedding of one batch of texts."""

    def warmup(self) -> None:
        """Embed one short text."""
        self.encode(["warm up"])


@contextmanager
def torch_on_one_thread() -> Iterator[None]:
    """Torch on one thread meanwhile: a small language model's token-by-token steps gain little from a
    second thread and lose much when the cores are busy (text mode p50 0.7 s on one thread, 4.9 s on two,
    under load 6 on 2 cores; docs/relevance.md)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class LanguageModel(Model):
    """Writes text from chat messages (instruction-tuned) or a plain prompt (base models)."""

    @property
    @abstractmethod
    def is_chat(self) -> bool:
        """Whether the model has a chat template (instruction-tuned)."""

    def generate(self, prompt: str | list[dict[str, str]], max_new_tokens: int = 40, prefix: str = "") -> str:
        """Greedy decoding with repetition control; returns only the new text after `prefix`."""
        start = time.perf_counter()
        with self.lock, torch.inference_mode(), torch_on_one_thread():
            text = self._generate(prompt, max_new_tokens, prefix)
        self.seconds_in_inference += time.perf_counter() - start
        self.calls += 1
        return text

    @abstractmethod
    def _generate(self, prompt: str | list[dict[str, str]], max_new_tokens: int, prefix: str) -> str:
        """Model-specific generation."""

    def score(self, texts: list[str]) -> list[float]:
        """How fluent each text reads to the model (mean token log-probability; higher is better)."""
        start = time.perf_counter()
        with self.lock, torch.inference_mode(), torch_on_one_thread():
            scores = self._score(texts)
        self.seconds_in_inference += time.perf_counter() - start
        self.calls += 1
        return scores

    def _score(self, texts: list[str]) -> list[float]:
        """Model-specific scoring; a model that cannot score has no preference."""
        return [0.0] * len(texts)

    def warmup(self) -> None:
        """Generate two tokens."""
        prompt: str | list[dict[str, str]] = [{"role": "user", "content": "Hi"}] if self.is_chat else "Hi"
        self.generate(prompt, max_new_tokens=2)
