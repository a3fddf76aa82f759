"""Description quality on the Tux Paint stamps and scikit-image's photos: object hits, hallucinations
(CHAIR-like, WordNet), non-words, degenerate outputs, latency, and BLEU-4 / CIDEr / cosine.

`hallucinated`: % of descriptions with a word naming an object, place or action (a WordNet noun or verb
that is never an adjective or adverb) that is grounded neither in the reference caption (the same word,
a WordNet synonym, hypernym or hyponym of one of its words) nor in the image's evidence: a label of
probability ≥ EVIDENCE_P (its lemmas and kind), a WordNet hypernym of the top-5 labels whose total
probability is ≥ EVIDENCE_P, or a nearest reference caption's word that is a hypernym of a top-5 label.
`nonwords`: % of descriptions with a word in neither Debian's `wamerican` nor the label / reference
vocabulary. Latency is per description (decode, encode, reference captions, sentence) on this machine.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from app import looks
from app.bridge import BridgeParams
from app.describer import Describer, Sight
from app.labels import category, head_noun, imagenet_labels, lemma_sets, singular, words
from app.pipeline import Pipeline
from app.preprocessing import decode
from app.registry import make_bridge, prepare
from app.settings import Settings
from scripts import wordnet
from scripts.tuxpaint import BENCH_CACHE, collect, fetch_stamps, split_of

log = logging.getLogger("bench.describe")

EVIDENCE_P = 0.1  # a label (or labels sharing a hypernym) at least this likely is evidence
MIN_DEPTH = 5  # hypernyms nearer the root ('object', 'artifact') ground nothing
# Words that claim nothing about the picture's content.
NEUTRAL = frozenset(
    ["image", "picture", "photo", "photograph", "drawing", "illustration", "cartoon", "clipart", "icon",
     "something", "thing", "kind", "sort", "type", "front", "side", "top", "bottom", "background",
     "foreground", "view", "close-up", "closeup", "scene", "model", "models", "confidence", "name",
     "a", "an", "the", "and", "or", "of", "in", "on", "at", "by", "with", "to", "for", "from", "into",
     "as", "its", "it", "is", "are", "be", "this", "that", "there", "their", "your", "my", "either"]
)  # fmt: skip
# scikit-image's photos (bundled with the library) and what each shows.
PHOTOS = {"chelsea": "A cat.", "coffee": "A cup of coffee.", "astronaut": "An astronaut.",
          "rocket": "A rocket.", "horse": "A horse.", "camera": "A man with a camera.",
          "motorcycle_left": "A motorcycle."}  # fmt: skip


@dataclass
class Sample:
    """One scored description."""

    path: str
    reference: str
    description: str
    labels: list[tuple[str, float]] = field(default_factory=list)
    references: list[tuple[str, float]] = field(default_factory=list)
    ms: float = 0.0


def names_object(description: str, noun: str, synonyms: dict[str, set[str]]) -> bool:
    """Whether the description names the noun, or a word that shares an ImageNet synonym set with it."""
    said = {singular(w) for w in words(description)}
    if not noun:
        return False
    return noun in said or bool(synonyms.get(noun, set()) & said)


def degenerate(description: str) -> bool:
    """Empty, too short, not ending as a sentence, or repeating itself."""
    tokens = words(description)
    if len(tokens) < 2 or description.strip()[-1:] not in ".!?":
        return True
    trigrams = [tuple(tokens[i : i + 3]) for i in range(len(tokens) - 2)]
    if len(trigrams) != len(set(trigrams)):
        return True
    return any(tokens[i] == tokens[i + 1] for i in range(len(tokens) - 1))


def word_synonyms() -> dict[str, set[str]]:
    """Single word → other single words sharing an ImageNet synonym set with it ('bunny' ↔ 'rabbit')."""
    table: dict[str, set[str]] = {}
    for lemmas in lemma_sets():
        heads = {singular(words(lemma)[-1]) for lemma in lemmas if words(lemma)}
        for head in heads:
            table.setdefault(head, set()).update(heads - {head})
    return table


@cache
def label_synsets() -> dict[str, int]:
    """ImageNet label → its WordNet noun synset offset."""
    from scripts.describe_tables import wnids

    return {label: int(wnid[1:]) for label, wnid in zip(imagenet_labels(), wnids(), strict=True)}


@cache
def vocabulary() -> frozenset[str]:
    """Words of the label names, lemmas and kinds: a description may use them though no dictionary has."""
    found: set[str] = set()
    for label, lemmas in zip(imagenet_labels(), lemma_sets(), strict=True):
        found.update(words(" ".join([label, *lemmas, category(label)]).replace("-", " ")))
    return frozenset(found)


def tokens(text: str) -> list[str]:
    """Lower-case words, hyphenated parts apart, possessives stripped."""
    return [w.removesuffix("'s").strip("'") for w in words(text.replace("-", " "))]


class Grounding:
    """Decides which words of a description are grounded (CHAIR-like, over WordNet)."""

    def __init__(self, net: wordnet.WordNet) -> None:
        self.net = net

    def general_enough(self, offset: int) -> bool:
        """Not a hypernym so near the root that it grounds anything."""
        return self.net.depth(offset) >= MIN_DEPTH

    def in_caption(self, word: str, caption: str) -> bool:
        """The word, a synonym, a hypernym or a hyponym of a caption word."""
        said = {form for w in tokens(caption) for form in self.net.base_forms(w)}
        if set(self.net.base_forms(word)) & said:
            return True
        mine = set(self.net.noun_synsets(word))
        for other in {s for w in tokens(caption) for s in self.net.noun_synsets(w)}:
            up = self.net.ancestors(other)
            if any(s in up and self.general_enough(s) for s in mine):
                return True
            if any(other in self.net.ancestors(s) and self.general_enough(other) for s in mine):
                return True
        return False

    def supported(self, word: str, sample: Sample) -> bool:
        """Named by a likely label, a likely hypernym of the labels, or an agreeing reference caption."""
        forms = set(self.net.base_forms(word))
        for label, p in sample.labels:
            lemmas = (
                {label, *lemma_sets()[imagenet_labels().index(label)]}
                if label in imagenet_labels()
                else {label}
            )
            if p >= EVIDENCE_P and forms & set(tokens(" ".join([*lemmas, category(label)]))):
                return True
        mass: dict[int, float] = {}
        for label, p in sample.labels:
            if label in label_synsets():
                for ancestor in self.net.ancestors(label_synsets()[label]):
                    mass[ancestor] = mass.get(ancestor, 0.0) + p
        mine = set(self.net.noun_synsets(word))
        if any(mass.get(s, 0.0) >= EVIDENCE_P and self.general_enough(s) for s in mine):
            return True
        agreeing = {
            s for caption, w in sample.references for t in tokens(caption) for s in self.net.noun_synsets(t)
        }
        return any(s in mass and s in agreeing and self.general_enough(s) for s in mine)

    def hallucinated(self, sample: Sample) -> list[str]:
        """The description's object/place/action words grounded nowhere."""
        return [
            w
            for w in tokens(sample.description)
            if w not in NEUTRAL
            and self.net.names_a_thing(w)
            and not self.in_caption(w, sample.reference)
            and not self.supported(w, sample)
        ]


def nonwords(sample: Sample, english: frozenset[str]) -> list[str]:
    """Words of the description in no dictionary and no label or reference caption."""
    known = english | vocabulary() | {t for caption, _ in sample.references for t in tokens(caption)}
    return [w for w in tokens(sample.description) if w not in known and singular(w) not in known]


def score(samples: list[Sample], cosines: np.ndarray) -> dict[str, float]:
    """All metrics over the samples, in percent except BLEU/CIDEr (0–1 and 0–10 scales) and latency."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    references = {str(i): [" ".join(words(s.reference))] for i, s in enumerate(samples)}
    candidates = {str(i): [" ".join(words(s.description)) or "empty"] for i, s in enumerate(samples)}
    bleu = Bleu(4).compute_score(references, candidates, verbose=0)[0][3]
    cider = Cider().compute_score(references, candidates)[0]
    synonyms = word_synonyms()
    grounding = Grounding(wordnet.load())
    english = wordnet.dictionary()
    hits = [names_object(s.description, head_noun(s.reference), synonyms) for s in samples]
    ms = np.array([s.ms for s in samples])
    return {
        "hit": 100 * float(np.mean(hits)),
        "hallucinated": 100 * float(np.mean([bool(grounding.hallucinated(s)) for s in samples])),
        "nonwords": 100 * float(np.mean([bool(nonwords(s, english)) for s in samples])),
        "degenerate": 100 * float(np.mean([degenerate(s.description) for s in samples])),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "cider": float(cider),
        "bleu4": float(bleu),
        "cos": float(np.mean(cosines)),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", choices=["tune", "report", "all", "photos", "dev"], default="report")
    parser.add_argument(
        "--against",
        type=Path,
        help="dev split: also run another checkout's code (e.g. main) on the same set, in this run",
    )
    parser.add_argument("--cache-dir", type=Path, default=BENCH_CACHE)
    parser.add_argument("--limit", type=int, default=None, help="first N images of the split only")
    parser.add_argument("--show", type=int, default=15, help="print this many examples")
    parser.add_argument(
        "--samples", type=Path, help="write every sample (labels, sentence, ms) as JSON lines"
    )
    parser.add_argument("--rescore", type=Path, help="score the samples of an earlier --samples file")
    return parser.parse_args(argv)


def inputs(split: str, cache_dir: Path, limit: int | None) -> list[tuple[str, str, bytes]]:
    """(name, reference caption, encoded image) of the split."""
    if split == "photos":
        import skimage

        folder = Path(skimage.__file__).parent / "data"
        found = []
        for name, caption in PHOTOS.items():
            buffer = io.BytesIO()
            Image.open(next(folder.glob(f"{name}.*"))).convert("RGB").save(buffer, "PNG")
            found.append((name, caption, buffer.getvalue()))
        return found[:limit]
    stamps = fetch_stamps(cache_dir.expanduser())
    chosen = [s for s in collect(stamps, None) if split in ("all", split_of(s.caption))][:limit]
    return [(s.path, s.caption, (stamps / s.path).read_bytes()) for s in chosen]


def describe_all(items: list[tuple[str, str, bytes]], settings: Settings) -> tuple[list[Sample], Pipeline]:
    """The service's path for each image: decode → encode → reference captions → sentence, timed."""
    models = prepare(settings, "packaged")
    assert models.lm is not None
    pipeline = Pipeline(models, make_bridge(models, BridgeParams(), settings.cache_dir))
    bridge, p = pipeline.bridge, pipeline.bridge.params
    describer = Describer(models.lm, settings.describe_max_new_tokens, labels=bridge.labels)
    samples: list[Sample] = []
    for name, caption, data in items:
        start = time.perf_counter()
        image = decode(data)
        encoded = pipeline.encode_images([image], label_k=len(bridge.labels))
        references, nearest = [], 0.0
        if bridge.references is not None:
            features = torch.from_numpy(encoded.features[0])
            references = bridge.references.captions_near(features, p.reference_k, p.reference_temperature)
            nearest = float(bridge.references.neighbours(features[None], 1)[0][0, 0])
        labels = encoded.labels[0]
        sentence = describer.describe(Sight(labels, references, looks.of(image, nearest, labels)))
        ms = (time.perf_counter() - start) * 1000
        samples.append(Sample(name, caption, sentence.text, labels[:5], references, ms))
    return samples, pipeline


def main(argv: Sequence[str] | None = None) -> int:
    """Describe every image of the split, score, print examples, the table and the RESULT line."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    started = time.perf_counter()
    settings = Settings()
    if args.split == "dev":
        from bench.describe_run import run_dev

        return run_dev(args, settings)
    if args.rescore:
        rows = [json.loads(line) for line in args.rescore.read_text().splitlines() if line.strip()]
        samples = [
            Sample(**{k: v for k, v in row.items() if k in Sample.__dataclass_fields__}) for row in rows
        ]
        samples = [Sample(s.path, s.reference, s.description, [tuple(x) for x in s.labels],  # type: ignore[misc]
                          [tuple(x) for x in s.references], s.ms) for s in samples]  # type: ignore[misc]  # fmt: skip
        text = prepare(settings, "packaged", with_lm=False).text
    else:
        samples, pipeline = describe_all(inputs(args.split, args.cache_dir, args.limit), settings)
        text = pipeline.models.text
        if args.samples:
            args.samples.write_text("".join(json.dumps(asdict(s)) + "\n" for s in samples))
    described = text.encode([s.description for s in samples])
    reference = text.encode([s.reference for s in samples])
    metrics = score(samples, (described * reference).sum(axis=1))
    grounding = Grounding(wordnet.load())
    for sample in samples[: args.show]:
        flagged = grounding.hallucinated(sample)
        print(
            f"{sample.reference!r:40.40} → {sample.description!r}"
            + (f"  [{', '.join(flagged)}]" if flagged else "")
        )
    load = os.getloadavg()[0]
    where = f"rescore={args.rescore}" if args.rescore else f"split={args.split}"
    print(f"{where} images={len(samples)} seconds={time.perf_counter() - started:.0f} "
          f"load1={load:.1f} cpus={os.cpu_count()}")  # fmt: skip
    print(
        f"RESULT describe hit={metrics['hit']:.1f} hallucinated={metrics['hallucinated']:.1f} "
        f"nonwords={metrics['nonwords']:.1f} degenerate={metrics['degenerate']:.1f} "
        f"p50_ms={metrics['p50_ms']:.0f} p95_ms={metrics['p95_ms']:.0f} cider={metrics['cider']:.3f} "
        f"bleu4={metrics['bleu4']:.3f} cos={metrics['cos']:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
