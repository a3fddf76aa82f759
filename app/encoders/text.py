"""Text encoder by mean pooling over the attention mask (BERT, MiniLM): the design's text features."""

from __future__ import annotations

import torch

from app.encoders.base import TextEncoder


class MeanPoolTextEncoder(TextEncoder):
    """Any Hugging Face encoder; sentence vector = mask-weighted mean of the last hidden states."""

    def __init__(self, source: str, model_id: str | None = None, max_length: int = 128) -> None:
        super().__init__()
        self.source = source
        self.model_id = model_id or source
        self.max_length = max_length

    def _load(self) -> None:
        """Load tokenizer and encoder from a local folder or hub id."""
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.source)
        self.net = AutoModel.from_pretrained(self.source).eval().to(self.device, self.dtype)
        self.dim = int(self.net.config.hidden_size)

    def _forward(self, texts: list[str]) -> torch.Tensor:
        """Mean of token states where attention_mask is 1."""
        tokens = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        hidden = self.net(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled: torch.Tensor = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return pooled
