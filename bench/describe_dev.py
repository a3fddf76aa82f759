"""The description bench's dev set and judges: pictures with the names a person would accept for them, and
what a description of each gets right or wrong (names the object, says a wrong object, gives up, grammar).

The set: scikit-image's and matplotlib's bundled pictures (hand-named), the Tux Paint stamps of the tune
half (named by their caption's nouns, their WordNet synonyms and the everyday kinds above them: a person
accepts "a bird" for a robin, not "an animal"), and photo-like pictures made here from the photos (crops,
mirror images, grey, dark, JPEG at low quality) plus drawn screenshots. Nothing comes from a hub.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from fnmatch import fnmatch
from functools import cache
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from app.labels import BREAKS, noun_phrase, words
from scripts import wordnet
from scripts.describe_tables import BROAD, KINDS
from scripts.tuxpaint import collect, fetch_stamps, split_of

# scikit-image's and matplotlib's pictures, and the names a person would accept for each.
PHOTOS: dict[str, tuple[str, ...]] = {
    "chelsea": ("cat", "kitten", "tabby"),
    "coffee": ("coffee", "cup", "mug", "espresso", "cappuccino", "latte"),
    "astronaut": ("astronaut", "person", "woman", "spacesuit", "space suit"),
    "rocket": ("rocket", "space shuttle", "missile", "launch"),
    "horse": ("horse", "pony", "stallion", "mare"),
    "camera": ("man", "person", "camera", "cameraman", "photographer", "tripod"),
    "motorcycle_left": ("motorcycle", "motorbike", "moped", "scooter"),
    "moon": ("moon",),
    "coins": ("coin", "money"),
    "brick": ("brick", "wall", "brick wall"),
    "grass": ("grass", "lawn", "meadow"),
    "gravel": ("gravel", "stone", "pebble", "rock"),
    "hubble_deep_field": ("galaxy", "star", "space", "sky"),
    "clock_motion": ("clock",),
    "page": ("page", "text", "document", "book"),
    "text": ("text", "writing", "sign", "letter"),
    "grace_hopper": ("woman", "person", "officer", "lady", "uniform"),
    "Minduka_Present_Blue_Pack": ("gift", "present", "box", "package", "parcel"),
}
# Reviewed names a person would accept for stamps whose caption's noun misses what the picture shows
# ("A baby sheep (a lamb)." → lamb; planets, road signs, buildings): added to the automatic names.
STAMP_NAMES: dict[str, tuple[str, ...]] = {
    "*bovines/bull.png": ("bull", "ox", "cattle", "cow"),
    "*bovines/cow*.png": ("cow", "cattle", "ox", "bull"),
    "*bovines/zebu.png": ("zebu", "ox", "cattle", "cow"), "*rabbit*.png": ("rabbit", "bunny", "hare"),
    "*easter/bunny*.png": ("bunny", "rabbit", "hare"), "*Woodlouse.png": ("woodlouse", "isopod"),
    "*cartoon/grapes.png": ("grape", "fruit"), "*apple_core.png": ("apple", "apple core", "fruit"),
    "*Cherry_Stella.png": ("cherry", "fruit"), "*fruit/avocado.png": ("avocado",),
    "*fruit/kiwi.png": ("kiwi", "kiwifruit"), "*vegetables/tomato.png": ("tomato",), "*pizza.png": ("pizza",),
    "*lettuce*.png": ("lettuce", "vegetable"), "*vegetables/*pepper.png": ("pepper", "bell pepper", "chili"),
    "*vegetables/garlic.png": ("garlic",), "*binoculars.png": ("binoculars",), "*plyers.png": ("pliers",),
    "*measuring_tape.png": ("tape measure", "tape"), "*wrench_plumbers.png": ("wrench",),
    "*wheelie_bin.png": ("bin", "trash can", "garbage can", "wheelie bin"), "space/moon/*": ("moon",),
    "space/planets/*": ("planet",), "*australian_rules_football.png": ("football", "ball"),
    "*cartoon/volleyball.png": ("volleyball", "ball"), "*rugby_goal_posts.png": ("goal", "goal post"),
    "town/flags/*": ("flag",), "town/roadsigns/*": ("sign", "road sign", "street sign"),
    "*stoplight*": ("traffic light", "stoplight"), "*roadsigns/arrow.png": ("arrow",),
    "town/houses/*": ("building", "house"), "*uk_post_box.png": ("post box", "mailbox", "letter box"),
    "*auto/beetle.png": ("car", "beetle"), "*cementMixer.png": ("cement mixer", "truck"),
    "*tux_tractor.png": ("tractor", "penguin"),
    "*planes/cartoon/plane.png": ("airplane", "plane", "aircraft"),
    "vehicles/locomotive/*": ("train", "railroad car", "locomotive"),
    "*bathyscape.png": ("submarine", "bathyscaphe"), "*chineseJunk.png": ("junk", "boat", "ship"),
    "military/vehicles/*": ("armored vehicle", "tank", "vehicle"),
    "*f22_raptor.png": ("jet", "airplane", "plane", "aircraft", "fighter"),
    "*ww2_german_gun.png": ("gun", "cannon"), "*blackcat.png": ("cat", "black cat"),
    "*dreydl*.png": ("dreidel", "top"), "*menorah.png": ("menorah", "candelabrum", "candle"),
    "*christmas/lamp.png": ("lamp", "light"), "*grave-*.png": ("gravestone", "tombstone", "grave"),
    "*fireman*.png": ("firefighter", "fireman", "person", "man"), "*thyme.png": ("thyme", "herb", "plant"),
    "*cep-1.png": ("mushroom", "fungus", "bolete"), "*hoverfly.png": ("hoverfly", "fly", "insect"),
    "*insects/mantis.png": ("mantis", "praying mantis"),
    "*spider_football.png": ("spider", "ball", "football"),
    "*knight_helmet.png": ("helmet", "armor"), "*wheel_tractor.png": ("wheel", "tire"),
    "*edward_bear.png": ("teddy bear", "bear", "toy"), "*sheep_lamb.png": ("lamb", "sheep"),
    "*wildboar.png": ("boar", "pig", "hog"), "*cylinder.png": ("cylinder", "gas cylinder"),
}  # fmt: skip
SCREENSHOT_NAMES = ("screenshot", "website", "web site", "web page", "window", "screen")
# Photos a made picture starts from (the ones with one clear object).
MADE_FROM = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle_left", "camera", "grace_hopper")
# Words a description may use that name no object: picture kinds, colours, hedges.
NOT_OBJECTS = frozenset(
    ["image", "picture", "photo", "photograph", "drawing", "illustration", "clip", "art", "clipart",
     "screenshot", "document", "cartoon", "icon", "something", "thing", "kind", "sort", "type", "view",
     "scene", "model", "models", "confidence", "name", "mostly", "colour", "color", "shades", "shade",
     "probably", "likely", "perhaps", "either", "black", "white", "grey", "gray", "red", "orange",
     "yellow", "green", "blue", "purple", "pink", "brown", "background", "front", "side", "top",
     "bottom", "close", "closeup", "piece", "pair", "group", "some", "one", "two", "black and white"]
)  # fmt: skip
PLACE_WORDS = frozenset({"on", "in", "by", "at", "near", "under", "beside", "against", "over"})
PHYSICAL, PERSON = 1930, 7846  # WordNet offsets of 'physical entity' and 'person'
UNSURE_WORDS = frozenset({"cannot", "unsure", "nothing"})
STOPS = frozenset({"a", "an", "the", "or", "and", "probably", "likely", "perhaps", "either"})
# Nouns that take no 'a' though inflect has no plural for them (a reviewed handful).
UNCOUNTABLE = frozenset({"cattle", "people", "clothing", "furniture", "food", "hay", "bread", "soup"})


@dataclass(frozen=True)
class DevItem:
    """One picture of the dev set and the names a person would accept for what it shows."""

    name: str
    origin: str  # "photo" (bundled), "stamp" (Tux Paint, tune half) or "made" (made here)
    data: bytes
    accepted: frozenset[str]


def _png(image: Image.Image) -> bytes:
    """PNG bytes of a picture."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg(image: Image.Image, quality: int) -> bytes:
    """JPEG bytes of a picture."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def bundled() -> dict[str, Image.Image]:
    """scikit-image's and matplotlib's pictures by name, RGB."""
    import matplotlib
    import skimage

    folders = [Path(skimage.__file__).parent / "data", Path(matplotlib.get_data_path()) / "sample_data"]
    found: dict[str, Image.Image] = {}
    for name in PHOTOS:
        path = next(p for folder in folders for p in sorted(folder.glob(f"{name}.*")))
        image: Image.Image = Image.open(path)
        if image.mode in ("RGBA", "LA", "P"):
            image = image.convert("RGBA")
            white = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, image)
        found[name] = image.convert("RGB")
    return found


def made(photos: dict[str, Image.Image]) -> list[tuple[str, bytes]]:
    """Photo-like variants of the photos: crop, mirror + dark, grey, low-quality JPEG, small and tilted."""
    out: list[tuple[str, bytes]] = []
    for name in MADE_FROM:
        image = photos[name]
        w, h = image.size
        crop = image.crop((w // 8, h // 8, w - w // 8, h - h // 8))
        out.append((f"{name}-crop", _jpeg(crop, 90)))
        dark = ImageEnhance.Brightness(ImageOps.mirror(image)).enhance(0.6)
        out.append((f"{name}-mirror-dark", _jpeg(dark, 85)))
        out.append((f"{name}-grey", _jpeg(ImageOps.grayscale(image), 90)))
        out.append((f"{name}-jpeg20", _jpeg(image, 20)))
        small = image.resize((max(w // 3, 1), max(h // 3, 1))).rotate(
            8, expand=True, fillcolor=(128, 128, 128)
        )
        out.append((f"{name}-small-tilted", _jpeg(small, 85)))
    return out


def screenshots() -> list[tuple[str, bytes]]:
    """Drawn application windows: title bar, toolbar, a side panel and lines of text."""
    out: list[tuple[str, bytes]] = []
    for n, (bar, panel) in enumerate([((40, 70, 140), (235, 235, 240)), ((60, 60, 60), (250, 250, 250)),
                                      ((200, 60, 40), (240, 244, 250))]):  # fmt: skip
        image = Image.new("RGB", (800, 600), "white")
        draw = ImageDraw.Draw(image)
        draw.rectangle((0, 0, 800, 36), fill=bar)
        draw.text((12, 10), f"Document {n + 1} - Editor", fill="white")
        draw.rectangle((0, 36, 800, 70), fill=(225, 225, 225))
        for x in range(10, 400, 60):
            draw.rectangle((x, 42, x + 44, 64), outline=(120, 120, 120), fill=(245, 245, 245))
        draw.rectangle((0, 70, 180, 600), fill=panel)
        for y in range(90, 580, 22):
            draw.text((200, y), "The quick brown fox jumps over the lazy dog " * 2, fill=(20, 20, 20))
            draw.text((12, y), f"Item {y // 22}", fill=(60, 60, 60))
        out.append((f"screenshot-{n + 1}", _png(image)))
    return out


@cache
def _net() -> wordnet.WordNet:
    """WordNet (Debian's wordnet-base)."""
    return wordnet.load()


def _compounds(tokens: list[str]) -> list[str]:
    """The longest WordNet nouns covering the tokens, left to right ('polar', 'bear' → 'polar bear')."""
    net, found, i = _net(), [], 0
    while i < len(tokens):
        for size in (3, 2, 1):
            phrase = " ".join(tokens[i : i + size])
            if size == 1 or (i + size <= len(tokens) and net.noun_synsets(phrase)):
                found.append(phrase)
                i += size
                break
    return found


def _physical_sense(noun: str) -> list[int]:
    """The commonest sense of a noun that is a physical thing and not a person (WordNet's first sense of
    'drake' is Sir Francis Drake), as a list of at most one synset."""
    net = _net()
    senses = net.noun_synsets(noun)
    for synset in senses:
        up = net.ancestors(synset)
        if PHYSICAL in up and PERSON not in up:
            return [synset]
    return list(senses[:1])


def accepted_names(nouns: list[str]) -> frozenset[str]:
    """The nouns, the synonyms of their commonest WordNet sense and the everyday (not broad) kinds above
    it ('robin' → bird, not animal)."""
    net, names, kinds = _net(), set(), set(KINDS) - set(BROAD)
    for noun in nouns:
        names.add(noun)
        for synset in _physical_sense(noun):
            names |= set(net.synsets[synset].lemmas)
            for ancestor in net.ancestors(synset):
                names |= set(net.synsets[ancestor].lemmas) & kinds
    return frozenset(n for n in names if n)


def caption_nouns(caption: str, path: str) -> list[str]:
    """The head noun of a caption's first noun phrase (as the longest WordNet compound) and of its
    'of' phrase ('A cup of coffee.' → cup, coffee), plus the stamp's folder when it is a kind ('birds')."""
    nouns: list[str] = []
    first = re.split(r"[.!?;:,(—]", caption, maxsplit=1)[0]
    parts = re.split(r"\bof\b", first.lower(), maxsplit=1)
    for part in parts:
        chunk = noun_phrase(part)
        if chunk:
            compounds = _compounds(chunk)
            nouns += [_net().base_forms(compounds[-1])[-1] if " " not in compounds[-1] else compounds[-1]]
    folder = Path(path).parent.name.lower()
    for form in _net().base_forms(folder):
        if form in KINDS and form not in BROAD:
            nouns.append(form)
            break
    return [n for n in dict.fromkeys(nouns) if _net().noun_synsets(n)]


def dev_set(cache_dir: Path) -> list[DevItem]:
    """The whole dev set: bundled photos, tune-half stamps, pictures made here."""
    photos = bundled()
    items = [DevItem(name, "photo", _png(image), frozenset(PHOTOS[name])) for name, image in photos.items()]
    for name, data in made(photos):
        items.append(DevItem(name, "made", data, frozenset(PHOTOS[name.split("-")[0]])))
    for name, data in screenshots():
        items.append(DevItem(name, "made", data, frozenset(SCREENSHOT_NAMES)))
    stamps = fetch_stamps(cache_dir.expanduser())
    for stamp in collect(stamps, None):
        if split_of(stamp.caption) == "tune":
            nouns = caption_nouns(stamp.caption, stamp.path)
            extra = {
                n for pattern, found in STAMP_NAMES.items() if fnmatch(stamp.path, pattern) for n in found
            }
            if nouns or extra:
                data = (stamps / stamp.path).read_bytes()
                items.append(DevItem(stamp.path, "stamp", data, accepted_names(nouns) | extra))
    return items


# -- judges -----------------------------------------------------------------------------------------


def _tokens(text: str) -> list[str]:
    """Lower-case words, hyphenated parts apart."""
    return [w.strip("'") for w in words(text.replace("-", " "))]


def object_words(description: str) -> list[str]:
    """The nouns a description names as things in the picture (places after on/in/by/at left out)."""
    found: list[str] = []
    for clause in re.split(r"[,;]", description):
        tokens: list[str] = []
        for token in _tokens(clause):
            if token in PLACE_WORDS:
                break
            tokens.append(token)
        for phrase in _compounds(tokens):
            if phrase in NOT_OBJECTS or phrase in BREAKS or phrase in {"a", "an", "the", "and", "or"}:
                continue
            if " " in phrase or _net().names_a_thing(phrase):
                found.append(phrase)
    return found


def _said(description: str) -> set[str]:
    """Every word and WordNet compound of the description, with their base forms."""
    tokens = _tokens(description)
    said = {form for t in tokens for form in _net().base_forms(t)}
    for size in (2, 3):
        said |= {" ".join(tokens[i : i + size]) for i in range(len(tokens) - size + 1)}
    return said


def names_object(description: str, item: DevItem) -> bool:
    """The description names the picture's object by a name a person would accept."""
    return bool(_said(description) & item.accepted)


def related(noun: str, names: frozenset[str]) -> bool:
    """The noun is a name, a synonym, a more general or a more specific word for one of the names."""
    net = _net()
    if set(net.base_forms(noun)) & names:
        return True
    mine = set(net.noun_synsets(noun))
    for name in names:
        for other in net.noun_synsets(name):
            if mine & set(net.ancestors(other)) or any(other in net.ancestors(s) for s in mine):
                return True
    return False


def wrong_objects(description: str, item: DevItem) -> list[str]:
    """The things the description names that are none of the accepted names nor related to them."""
    return [w for w in object_words(description) if not related(w, item.accepted)]


def gives_up(description: str) -> bool:
    """The description names nothing: it says the models cannot, or every word is a picture kind, a colour
    or a function word."""
    tokens = set(_tokens(description))
    return bool(UNSURE_WORDS & tokens) or tokens <= NOT_OBJECTS | STOPS | BREAKS | {"of", "with"}


@cache
def _inflect() -> object:
    """inflect's engine."""
    import inflect

    return inflect.engine()


def grammar_slips(description: str) -> list[str]:
    """Article errors by inflect's rules: 'a'/'an' before the wrong sound, or before a plural or mass noun."""
    engine: Any = _inflect()
    slips: list[str] = []
    for clause in re.split(r"[,;:.!?]", description):
        tokens = re.findall(r"[A-Za-z][A-Za-z'-]*", clause)
        for i, token in enumerate(tokens[:-1]):
            if token.lower() not in ("a", "an"):
                continue
            following = tokens[i + 1]
            if engine.a(following).split()[0].lower() != token.lower():
                slips.append(f"{token} {following}")
            phrase: list[str] = []
            for word in tokens[i + 1 : i + 4]:
                if word.lower() in BREAKS or word.lower() in STOPS:
                    break
                phrase.append(word)
            head = phrase[-1].lower() if phrase else ""
            single = engine.singular_noun(head) if head else False
            if head in UNCOUNTABLE or (single and single != head and not head.endswith(("ss", "us", "is"))):
                slips.append(f"{token} {' '.join(phrase)}")
    if description[:1].islower() or description.rstrip()[-1:] not in ".!?":
        slips.append("capital/full stop")
    return slips


# -- text mode ----------------------------------------------------------------------------------------

QUERIES = (
    "a red car", "an old lighthouse at sunset", "a dog playing in the snow", "a child riding a bicycle",
    "a cup of coffee", "mountains reflected in a lake", "a cat sleeping on a sofa", "fresh fruit in a bowl",
    "a city street at night", "an airplane in the sky", "two horses in a field", "a bowl of soup",
    "sunflowers", "a black and white photo of a bridge", "a birthday cake with candles",
    "a sailboat on the sea", "people walking in the rain", "a wooden chair", "eiffel tower",
    "a snowy forest", "a yellow school bus", "an owl", "a plate of spaghetti", "a lion resting",
    "a pile of books", "a man wearing a hat", "a beach with palm trees", "a green apple",
    "an astronaut in space", "a kitten",
)  # fmt: skip
QUERY_STOP = frozenset({"a", "an", "the", "of", "in", "on", "at", "with", "and", "to", "by", "for", "two"})
PERSON_WORDS = frozenset(
    ["he", "she", "his", "her", "him", "i", "my", "me", "we", "our", "they", "their", "man", "woman",
     "boy", "girl", "child", "kid", "people", "person", "family", "friend", "named", "called", "brand",
     "logo", "reads", "says", "sign", "mom", "dad", "mother", "father", "wife", "husband"]
)  # fmt: skip
NUMBER = re.compile(r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|year|years|old)\b", re.I)


def keeps_query_words(query: str, text: str) -> bool:
    """Every content word of the query appears in the text (in any inflection)."""
    said = _said(text)
    return all(set(_net().base_forms(w)) & said for w in _tokens(query) if w not in QUERY_STOP)


def one_sentence(text: str) -> bool:
    """One full sentence: a capital first, one end mark at the end, at least three words."""
    text = text.strip()
    return (
        text[:1].isupper()
        and text[-1:] == "."
        and not re.search(r"[.!?]\s", text[:-1])
        and len(words(text)) >= 3
        and not grammar_slips(text)
    )


def invents(query: str, text: str) -> list[str]:
    """Names, people, numbers, ages, brands or quoted text that the query does not have."""
    asked = set(_tokens(query)) | {form for w in _tokens(query) for form in _net().base_forms(w)}
    found = [w for w in _tokens(text) if w in PERSON_WORDS and w not in asked]
    found += [m.group(0) for m in NUMBER.finditer(text) if m.group(0).lower() not in asked]
    capitals = re.findall(r"(?<!^)(?<![.!?] )\b[A-Z][a-z]+", text.strip())
    found += [c for c in capitals if c.lower() not in asked]
    found += ['"'] if re.search('["“”]', text) else []
    return found
