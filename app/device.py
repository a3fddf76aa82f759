"""Device and dtype chosen once for every model."""

from __future__ import annotations

import torch


def resolve_device(name: str = "auto") -> tuple[torch.device, torch.dtype]:
    """Map a device setting to a torch device and the dtype models run in there."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} requested but CUDA is not available on this machine")
        return device, torch.float16
    return device, torch.float32
