"""The bridge's reference set: pictures are found by the captions of the reference pictures they look like."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app import ranking
from app.assembly import service_over
from app.bridge import Bridge, BridgeParams, build_bridge
from app.build import BuildConfig, build_index
from app.index import Index
from app.pca import Pca
from app.pipeline import Models, Pipeline
from app.preprocessing import stack
from app.ranking import rank
from app.references import ReferenceSet, VisualHint, find_references, reference_path
from app.sources import FolderSource
from tests.conftest import make_gallery

TOY: dict[str, list[tuple[int, int, int]]] = {
    "fire engine": [(200, 30, 30), (240, 10, 40), (210, 40, 20)],
    "ocean wave": [(30, 30, 200), (10, 60, 230), (40, 20, 210)],
    "grass field": [(30, 190, 30), (50, 220, 10), (20, 200, 60)],
}


def toy_references(models: Models, folder: Path) -> ReferenceSet:
    """Nine captioned colour pictures encoded by the fake encoder, saved where build_bridge looks."""
    plain = Pipeline(models, Bridge(BridgeParams(references=""), ["x"], np.ones((1, 64), np.float32)))
    captions = [caption for caption, colours in TOY.items() for _ in colours]
    pixels = stack(
        [plain.preprocess(Image.new("RGB", (32, 32), c)) for colours in TOY.values() for c in colours]
    )
    features = torch.nn.functional.normalize(plain.run_encoder(pixels).features, dim=-1).numpy()
    pca = Pca.fit(features, 2, centred=True)
    references = ReferenceSet(
        name="toy",
        model_id=models.image.model_id,
        captions=list(TOY),
        caption_of=np.array([list(TOY).index(c) for c in captions]),
        features=pca.transform(features).astype(np.float16),
        pca=pca,
    )
    references.save(reference_path("toy", models.image.model_id, folder))
    return references


def bridge_with(models: Models, params: BridgeParams, folder: Path, cache: Path) -> Bridge:
    """The fake profile's bridge, looking for reference sets in `folder`."""
    assert models.image.labels is not None
    return build_bridge(
        params,
        models.text,
        models.image.labels,
        identity=False,
        cache_dir=cache,
        image_model=models.image.model_id,
        reference_dir=folder,
    )


def test_a_picture_is_found_by_the_captions_of_the_references_it_looks_like(
    models: Models, tmp_path: Path
) -> None:
    toy_references(models, tmp_path)
    scores = {}
    for name, params in (("with", BridgeParams(references="toy")), ("without", BridgeParams(references=""))):
        pipeline = Pipeline(models, bridge_with(models, params, tmp_path, tmp_path / "cache"))
        index_dir = tmp_path / name
        build_index(
            FolderSource(make_gallery(tmp_path / f"gallery-{name}")),
            index_dir,
            pipeline,
            BuildConfig(pca_dim=0, workers=0),
            progress=False,
        )
        assert Index(index_dir).meta.bridge.references == params.references
        service = service_over(Index(index_dir), models, tmp_path / "cache")
        hits = service.search_text("a fire engine", top_k=3)
        scores[name] = {hit.record.source: hit.score for hit in hits}
        if name == "with":
            assert hits[0].record.source == "red.png"
            assert service.search_text("ocean wave", top_k=1)[0].record.source == "sub/blue.webp"
    assert scores["with"]["red.png"] > scores["without"]["red.png"] + 0.1


def test_without_a_set_for_the_encoder_the_bridge_is_conse_and_says_so(
    models: Models, tmp_path: Path
) -> None:
    bridge = bridge_with(models, BridgeParams(references="missing"), tmp_path, tmp_path / "cache")
    assert bridge.references is None
    assert bridge.params.references == "" and bridge.params.reference_weight == 0.0  # what meta.json records
    plain = bridge_with(models, BridgeParams(references=""), tmp_path, tmp_path / "cache")
    output = models.image.encode(torch.randn(4, 3, 16, 16))
    np.testing.assert_allclose(bridge.to_text_space(output), plain.to_text_space(output), atol=1e-6)


def test_indexes_from_before_reference_sets_keep_their_bridge() -> None:
    old = BridgeParams.from_json({"templates": ["{}"], "names": "short"})
    assert old.references == "" and old.reference_weight == 0.0
    params = BridgeParams()
    assert BridgeParams.from_json(params.to_json()) == params


def test_a_saved_set_finds_the_same_neighbours(models: Models, tmp_path: Path) -> None:
    made = toy_references(models, tmp_path)
    loaded = find_references("toy", models.image.model_id, tmp_path)
    assert loaded is not None and loaded.captions == made.captions and len(loaded) == 9
    features = models.image.encode(torch.randn(5, 3, 16, 16)).features
    for a, b in zip(made.neighbours(features, 3), loaded.neighbours(features, 3), strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-3)
    assert find_references("toy", "another-encoder", tmp_path) is None


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_reference_weight_moves_between_conse_and_captions(
    models: Models, tmp_path: Path, weight: float
) -> None:
    toy_references(models, tmp_path)
    bridge = bridge_with(models, BridgeParams(references="toy", reference_weight=weight), tmp_path, tmp_path)
    red = Image.new("RGB", (32, 32), (230, 20, 30))
    pipeline = Pipeline(models, bridge, flip=False)
    vector = pipeline.encode_images([red]).vectors[0]
    caption = models.text.encode(["fire engine"])[0]
    caption /= np.linalg.norm(caption)
    if weight == 1.0:
        assert float(vector @ caption) > 0.99  # all three neighbours say "fire engine"
    else:
        assert float(vector @ caption) < 0.5


def test_a_query_finds_pictures_that_look_like_the_references_of_its_words(
    models: Models, tmp_path: Path
) -> None:
    toy_references(models, tmp_path)
    index_dir = tmp_path / "index"
    images = BridgeParams(references="toy", reference_weight=0.0)  # image vectors: ConSE alone
    pipeline = Pipeline(models, bridge_with(models, images, tmp_path, tmp_path / "cache"))
    build_index(
        FolderSource(make_gallery(tmp_path / "gallery")),
        index_dir,
        pipeline,
        BuildConfig(pca_dim=0, workers=0),
        progress=False,
    )
    index = Index(index_dir)
    query = pipeline.encode_query("ocean wave")
    assert query.visual is not None and query.visual.weight == pytest.approx(0.3)
    plain = rank(index, query.vector, 3)
    looked = rank(index, query.vector, 3, visual=query.visual)
    sources = {row: record.source for row, record in zip(range(3), index.records([0, 1, 2]), strict=True)}
    assert sources[looked[0].row] == "sub/blue.webp" != sources[plain[0].row]
    assert [r.score for r in looked] == sorted((r.score for r in looked), reverse=True)
    assert all(-1.0 <= r.score <= 1.0 for r in looked)


def test_pages_of_a_re_ranked_search_are_stable_past_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ranking, "RERANK_POOL", 4)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(10, 8)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    hint = VisualHint(features[7], 0.3)
    ranked = [(row, 1.0 - row / 20) for row in range(10)]  # text ranking: row order
    fused = ranking.rerank_by_look(ranked, hint, features)
    assert sorted(row for row, _ in fused[:4]) == [0, 1, 2, 3]  # the pool is re-ordered…
    assert [row for row, _ in fused[4:]] == list(range(4, 10))  # …what follows keeps its order
    scores = [score for _, score in fused]
    assert scores == sorted(scores, reverse=True)
    # a shorter fetch gives the same first page
    assert ranking.rerank_by_look(ranked[:6], hint, features) == fused[:6]
