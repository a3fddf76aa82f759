"""A folder name must not bury a clear look: the nine-photo "a cat" case, through the packaged models.

Six unrelated scikit-image photos (astronaut, rocket, coffee, camera, coins, page) sit in a folder
`cats/`; the cat (`chelsea`) is `misc/IMG_0001.jpg`, beside two more unnamed photos. The index is
built by the build path and searched by `SearchService` in hybrid mode, as `imgsearch search "a cat"`
does; then the same inputs (the service's vector ranking and lexical hits) are fused by each
variant of bench/propagation.py, with the coherence of the folder word as the build-time gate sees it.

    .venv/bin/python -m bench.clear_look
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from app import lexical, ranking
from app.assembly import service_over
from app.bridge import BridgeParams
from app.index import Index
from app.pipeline import Pipeline
from app.query import CompoundQuery, Part
from app.registry import make_bridge, prepare
from app.service import LEXICAL_DEPTH, SearchRequest
from app.settings import Settings
from bench.propagation import Fusion, Match, coherence, fuse, lendable, lift
from bench.relevance import build

log = logging.getLogger("bench.clear_look")

PHOTOS = {  # scikit-image file → where the collection keeps it
    "astronaut": "cats/astronaut.jpg",
    "rocket": "cats/rocket.jpg",
    "coffee": "cats/coffee.jpg",
    "camera": "cats/camera.jpg",
    "coins": "cats/coins.jpg",
    "page": "cats/page.jpg",
    "chelsea": "misc/IMG_0001.jpg",
    "motorcycle_left": "misc/IMG_0002.jpg",
    "hubble_deep_field": "misc/IMG_0003.jpg",
}
VARIANTS = {
    "shipped fusion (bench copy)": Fusion(),
    "clear-look guard, lead 0.5": Fusion(lead=0.5),
    "clear-look guard, lead 0.5, strict": Fusion(lead=0.5, strict=True),
    "folder-only matches × 0.5": Fusion(folder_factor=0.5),
    "clear-look margin 0.1 alone (no lead guard)": Fusion(margin=0.1, absolute=True, folders=True, bare=True),
}


def stage(folder: Path) -> None:
    """Write the nine photos as JPEG files where PHOTOS says."""
    import skimage

    data = Path(skimage.__file__).parent / "data"
    for name, target in PHOTOS.items():
        path = folder / target
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.open(next(data.glob(f"{name}.*"))).convert("RGB").save(path, "JPEG", quality=90)


def main(argv: Sequence[str] | None = None) -> int:
    """Build, search "a cat" through the service, then fuse the same inputs by each variant."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--query", default="a cat")
    args = parser.parse_args(argv)
    settings = Settings()
    models = prepare(settings, "packaged", with_lm=False)
    pipeline = Pipeline(models, make_bridge(models, BridgeParams(), settings.cache_dir))
    with tempfile.TemporaryDirectory(prefix="clear-look-") as scratch:
        folder, index_dir = Path(scratch) / "photos", Path(scratch) / "index"
        stage(folder)
        build(folder, index_dir, pipeline, 256, settings)
        index = Index(index_dir)
        try:
            service = service_over(index, models, settings.cache_dir)
            request = SearchRequest(CompoundQuery(positive=(Part(args.query),)), mode="hybrid", top_k=9)
            print(f'SearchService, hybrid, "{args.query}" (the score each result carries):')
            for rank, hit in enumerate(service.search(request).hits, start=1):
                print(f"  {rank}. {hit.record.source:<22} {hit.score:6.3f}  matched {hit.matched}")
            sources = [record.source for record in index.records(list(range(index.count)))]
            encoded = service.pipeline.encode_query(args.query)
            vector = ranking.candidates(index, encoded.vector, visual=encoded.visual, classes=encoded.classes)
            head = vector.head(index.count)
            hits = service.catalog.search_text(args.query, LEXICAL_DEPTH, None)
            with index.manifest() as connection:
                shares = lexical.coverages(connection, args.query, [hit.row for hit in hits])
            matches = [Match(h.row, h.score, h.coverage, *shares[h.row], "name" in h.matched) for h in hits]
            lead = (head[0][1] - head[1][1]) / (head[0][1] - head[-1][1])
            print(
                f"vector ranking: {[(sources[row], round(score, 3)) for row, score in head]}; lead {lead:.2f}"
            )
            for name, fusion in VARIANTS.items():
                fused = fuse(head, matches, {}, fusion)
                print(f"{name}: " + ", ".join(f"{sources[row]} {score:.3f}" for row, score in fused))
            stored = service.catalog.metadata(list(range(index.count)))
            words = [
                lendable([Path(m.name).stem, m.folder, m.text])
                for m in (stored[r] for r in range(index.count))
            ]
            features = np.asarray(index.features, dtype=np.float32)
            print(
                f"the folder word 'cats': pairwise coherence {coherence(features, words)['cats']:.3f}, "
                f"lift {lift(features, words, k=3)['cats']:.2f} (a random folder: 0 and 1)"
            )
        finally:
            index.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
