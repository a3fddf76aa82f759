"""Ship the text embeddings every first start would compute: the bridge's label and caption vectors and
the describer's concept names (its text vote).

    python -m scripts.text_vectors

writes app/data/text-vectors-<text model>.npz (float16 unit rows, one array per app/bridge.py cache
key) for the packaged profile's default bridge, so that a service or build on an empty cache embeds
no label or reference caption before it is ready. Other texts or models are embedded and cached as before.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from app.bridge import BridgeParams, label_vectors, text_vectors_path
from app.describer import Describer
from app.registry import make_bridge, prepare
from app.settings import Settings

log = logging.getLogger("scripts.text_vectors")


def main() -> int:
    """Embed the default bridge's texts into a fresh cache, then pack that cache into app/data."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    models = prepare(Settings(precision="fp32"), "packaged", with_lm=False)
    out = text_vectors_path(models.text.model_id)
    out.unlink(missing_ok=True)  # embed everything afresh rather than read the previous file back
    with tempfile.TemporaryDirectory(prefix="text-vectors-") as scratch:
        cache = Path(scratch)
        make_bridge(models, BridgeParams(), cache)
        label_vectors(models.text, Describer(None).concept_names(), ("{}",), cache)  # as app/assembly.py
        arrays = {
            path.stem.removeprefix("labels-"): np.load(path) for path in sorted(cache.glob("labels-*.npy"))
        }
    np.savez_compressed(out, **{key: value.astype(np.float16) for key, value in arrays.items()})
    shapes = ", ".join(f"{key} {value.shape}" for key, value in arrays.items())
    print(
        f"wrote {out} ({shapes}), {out.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
