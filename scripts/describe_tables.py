"""Write app/data/wordnet.json: for each ImageNet class, its everyday kinds (WordNet hypernyms named by a
plain noun, nearest first: tabby → cat, animal), for places, how a sentence puts something there, and
for every noun naming a synset with ImageNet classes at or below it, those classes (search: "an animal").

The service reads the JSON and never needs WordNet itself; run once after changing the lists below:
`.venv/bin/python -m scripts.describe_tables` (fetches Debian's `wordnet-base` on first use).
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

from scripts.wordnet import WordNet, dictionary, load

TARGET = Path(__file__).resolve().parent.parent / "app" / "data" / "wordnet.json"
WORDS = TARGET.with_name("words.txt.gz")
# Everyday names a description may fall back to when fine classes disagree (a basic level, Rosch 1976).
KINDS = ["dog", "wolf", "fox", "cat", "feline", "bear", "monkey", "ape", "lemur", "rabbit", "rodent",
         "squirrel", "horse", "zebra", "cattle", "sheep", "goat", "pig", "deer", "antelope", "elephant",
         "whale", "seal", "otter", "weasel", "badger", "bat", "bird", "parrot", "owl", "eagle", "duck",
         "goose", "swan", "penguin", "chicken", "hen", "gull", "heron", "crane", "fish", "shark", "ray",
         "eel", "snake", "lizard", "turtle", "crocodile", "frog", "salamander", "spider", "scorpion",
         "crab", "lobster", "shrimp", "snail", "slug", "jellyfish", "starfish", "beetle", "butterfly",
         "moth", "bee", "ant", "fly", "grasshopper", "cricket", "insect", "worm", "coral", "mushroom",
         "fungus", "flower", "tree", "fruit", "vegetable", "boat", "ship", "car", "truck", "bus",
         "train", "aircraft", "airplane", "bicycle", "motorcycle", "tractor", "wagon", "cart", "hat",
         "helmet", "shoe", "boot", "dress", "shirt", "coat", "garment", "bag", "bottle", "jar", "cup",
         "mug", "bowl", "plate", "pot", "pan", "basket", "box", "chair", "seat", "bed", "table", "desk",
         "cabinet", "lamp", "clock", "watch", "computer", "phone", "telephone", "camera", "television",
         "radio", "keyboard", "piano", "guitar", "drum", "horn", "violin", "instrument", "ball", "doll",
         "mask", "building", "house", "church", "tower", "bridge", "fence", "gate", "tool", "hammer",
         "knife", "sword", "gun", "weapon", "bread", "cake", "pizza", "sandwich", "soup", "dish",
         "food", "drink", "apple", "citrus", "squash", "cabbage",
         "mountain", "rock", "shore", "beach", "lake", "sea", "reef", "valley",
         "cliff", "volcano", "shop", "store", "kitchen", "restaurant", "library", "animal", "vehicle",
         "furniture", "device", "machine", "structure", "covering", "plant"]  # fmt: skip
# Kinds that say too little to stand beside another object ('a cat and an animal').
BROAD = ["animal", "vehicle", "container", "furniture", "device", "machine", "structure", "covering",
         "plant", "food", "instrument", "garment", "tool", "weapon"]  # fmt: skip
# Places (ImageNet classes) and the preposition a sentence puts its subject there with.
SCENES = {"alp": "on", "cliff": "on", "coral reef": "on", "geyser": "by",
          "promontory": "on", "sandbar": "on", "lakeside": "by", "seashore": "on", "valley": "in",
          "volcano": "by",
          "bakery": "in", "barbershop": "in", "bookshop": "in", "butcher shop": "in",
          "confectionery": "in", "grocery store": "in", "restaurant": "in", "shoe shop": "in",
          "tobacco shop": "in", "toyshop": "in", "library": "in", "cinema": "in", "home theater": "in",
          "boathouse": "by", "greenhouse": "in", "patio": "on", "dock": "at", "breakwater": "by",
          "dam": "by", "church": "by", "monastery": "by", "palace": "by", "planetarium": "by",
          "castle": "by", "stupa": "by", "mosque": "by"}  # fmt: skip
MIN_DEPTH = 4  # synsets nearer the root (entity, object, whole, …) name no kind of picture


def wnids() -> list[str]:
    """ImageNet-1k WordNet ids ('n02123045') in classifier output order (from timm)."""
    from timm.data.imagenet_info import ImageNetInfo

    info: Any = ImageNetInfo  # typed in some timm releases, not in others
    return list(info().label_names())


def kind_senses(net: WordNet, classes: list[int]) -> dict[int, str]:
    """Synset → everyday name, for each KINDS word's sense that covers the most ImageNet classes."""
    covering: dict[int, int] = {}
    for offset in classes:
        for ancestor in net.ancestors(offset):
            covering[ancestor] = covering.get(ancestor, 0) + 1
    chosen: dict[int, str] = {}
    for word in KINDS:
        senses = [s for s in net.noun_index.get(word, ()) if covering.get(s)]
        if senses:
            chosen.setdefault(max(senses, key=lambda s: covering[s]), word)
    return chosen


def classes_below(net: WordNet, classes: list[int]) -> dict[str, list[int]]:
    """Noun lemma → indices of the ImageNet classes at or below any of its senses ('bird' → 59 classes)."""
    below: dict[int, set[int]] = {}
    for index, offset in enumerate(classes):
        for ancestor in net.ancestors(offset):
            below.setdefault(ancestor, set()).add(index)
    found: dict[str, set[int]] = {}
    for synset, members in below.items():
        if net.depth(synset) >= MIN_DEPTH:
            for lemma in net.synsets[synset].lemmas:
                found.setdefault(lemma, set()).update(members)
    return {lemma: sorted(members) for lemma, members in sorted(found.items())}


def tables(net: WordNet) -> dict[str, object]:
    """The JSON content: kinds per class (nearest first), broad kinds, scene classes, classes below nouns."""
    classes = [int(wnid[1:]) for wnid in wnids()]
    names = kind_senses(net, classes)
    kinds: list[list[str]] = []
    for offset in classes:
        ancestors = net.ancestors(offset)
        found = sorted((d, names[a]) for a, d in ancestors.items() if a in names and d > 0)
        kinds.append(list(dict.fromkeys(name for _, name in found)))
    labels = json.loads((TARGET.parent / "imagenet.json").read_text())["labels"]
    scenes: dict[str, str] = {}
    for label, offset in zip(labels, classes, strict=True):
        lemmas = net.synsets[offset].lemmas
        for lemma, preposition in SCENES.items():
            if lemma in lemmas or lemma == label.lower():
                scenes[label] = preposition
    return {"kinds": kinds, "broad": BROAD, "scenes": scenes, "below": classes_below(net, classes)}


def main() -> int:
    """Regenerate the file."""
    content = tables(load())
    TARGET.write_text(json.dumps(content, separators=(",", ":")) + "\n")
    plain = sorted(word for word in dictionary() if word.isalpha() and word.isascii())
    WORDS.write_bytes(gzip.compress("\n".join(plain).encode() + b"\n", mtime=0))
    missing = [name for name in SCENES if name not in str(content["scenes"]).lower()]
    print(f"wrote {TARGET} and {WORDS.name} ({len(plain)} words); scene names not matched: {missing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
