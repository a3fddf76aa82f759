"""Text encoder by mean pooling over the attention mask (BERT, MiniLM): the design's text features.

On the CPU, with `optimize`, a local model folder runs as an ONNX export (made once per weights file,
cached under `cache_dir/onnx` like the image encoder's) with its `tokenizer.json` read by the
`tokenizers` library: a start then neither imports transformers nor builds the PyTorch model, which
took 3.6 of the service's 7.5 s to search-ready (docs/performance.md). The outputs are the PyTorch
model's (cosine > 0.9999, tests/test_text_onnx.py).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.encoders.base import TextEncoder
from app.encoders.hub import hub_source
from app.encoders.onnx import OnnxRunner, cached_export_path, export_text

log = logging.getLogger(__name__)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class _Pooled(torch.nn.Module):
    """A Hugging Face encoder whose output is the mask-weighted mean of its last hidden states."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean of token states where attention_mask is 1."""
        hidden = self.net(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled: torch.Tensor = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return pooled


class MeanPoolTextEncoder(TextEncoder):
    """Any Hugging Face encoder; sentence vector = mask-weighted mean of the last hidden states."""

    def __init__(
        self,
        source: str,
        model_id: str | None = None,
        max_length: int = 128,
        *,
        optimize: bool = False,
        cache_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.model_id = model_id or source
        self.max_length = max_length
        self.optimize = optimize
        self.cache_dir = cache_dir
        self.runner: OnnxRunner | None = None

    def _load(self) -> None:
        """ONNX Runtime on the CPU when the model is a local folder with a fast tokenizer, else PyTorch."""
        if self.optimize and self.device.type == "cpu" and self._load_onnx():
            return
        self._load_torch()

    def _load_torch(self) -> None:
        """Load tokenizer and encoder from a local folder or hub id."""
        from transformers import AutoModel, AutoTokenizer

        source = hub_source(self.source)
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        net = AutoModel.from_pretrained(source).eval().to(self.device, self.dtype)
        self.net = _Pooled(net)
        self.dim = int(net.config.hidden_size)

    def _load_onnx(self) -> bool:
        """Tokenizer and ONNX session (exporting the model once); False when the folder does not allow it."""
        folder = Path(self.source)
        weights = next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None)
        if weights is None or not (folder / "tokenizer.json").is_file():
            return False
        try:
            target = cached_export_path(f"text-{folder.name}", weights, self.cache_dir)
            if not target.is_file():
                log.info("preparing %s once: exporting it to ONNX (%s)", self.model_id, target)
                self._load_torch()
                export_text(self.net, target)
                del self.net, self.tokenizer
            self.runner = OnnxRunner(target, torch.get_num_threads())
        except (ImportError, RuntimeError, OSError) as exc:
            log.warning("ONNX Runtime unavailable for %s (%s): PyTorch instead", self.model_id, exc)
            return False
        self.fast_tokenizer = _tokenizer(folder, self.max_length)
        self.dim = int(json.loads((folder / "config.json").read_text())["hidden_size"])
        return True

    def _forward(self, texts: list[str]) -> torch.Tensor:
        """Mean of token states where attention_mask is 1."""
        if self.runner is not None:
            encodings = self.fast_tokenizer.encode_batch(texts)
            ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
            mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
            return torch.from_numpy(self.runner.run({"input_ids": ids, "attention_mask": mask})[0])
        tokens = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        pooled: torch.Tensor = self.net(tokens["input_ids"], tokens["attention_mask"])
        return pooled


def _tokenizer(folder: Path, max_length: int) -> Any:
    """The folder's fast tokenizer, truncating at `max_length` and padding to the longest text."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(max_length)
    config = folder / "tokenizer_config.json"
    pad = json.loads(config.read_text()).get("pad_token", "[PAD]") if config.is_file() else "[PAD]"
    pad = pad.get("content", "[PAD]") if isinstance(pad, dict) else str(pad)
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id(pad) or 0, pad_token=pad)
    return tokenizer
