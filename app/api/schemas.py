"""Request and response bodies of the API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from app.filters import FILTERS, Control, Filter
from app.options import DATE_SORT_MIN_SCORE, MAX_QUERY_CHARS, Mode, Sort
from app.query import MAX_PARTS

QUERY_HELP = "what to look for, in words (at most 1000 characters, not blank)"
TOP_K_HELP = "how many results to return (1 to 100)"
OFFSET_HELP = "how many of the best results to skip, for paging (0 to 10000)"
IMAGE_ID_HELP = "an indexed image's id (16 hex digits, as returned by /search)"
UNDERSTAND_HELP = (
    "read the dates and places typed in the query (default true): 'a dog in 2018' searches 'a dog' taken in "
    "2018, 'photos from Italy' those taken in Italy; what was read is in the response's `understood`; "
    "filters given explicitly win over it"
)
MODE_HELP = (
    "hybrid (default): meaning fused with matches of file names, folders and the text files carry; "
    "semantic: meaning only; lexical: names, folders and text only"
)
SORT_HELP = (
    "relevance (default): the best match first; newest / oldest: by when the picture was taken "
    "(`taken_at`; undated pictures last), among the results scoring at least `min_score`"
)
MIN_SCORE_HELP = (
    "keep only results scoring at least this on the 0–1 relevance scale (see `score`); default: none "
    f"in relevance order, {DATE_SORT_MIN_SCORE} with a date sort; 0 keeps every result"
)
SCORE_HELP = (
    "relevance on a 0–1 scale, the value the results are ranked by in relevance order: 1 = this query's "
    "best match. Meaning alone (semantic part): (c − c_last) / (c_best − c_last) over the best 200 by "
    "meaning (c: the cosine to the query, re-ranked by look and class), 0 past them; hybrid: that "
    "part + 2 × the lexical part (coverage² × BM25 / the best BM25), a folder-only or partial name match "
    "capped below a clear best look, divided by the best such total; lexical mode: BM25 / the best BM25"
)
SCORES_HELP = (
    "the parts of `score`, each on [0, 1]: semantic (meaning; its share of the way from the 200th match "
    "to the best), lexical (names, folders, text; coverage² × BM25 / the best), propagated (hybrid: the "
    "words it borrowed from named look-alikes; ω × the share of the query's words among them) — those the "
    "mode computes"
)

# The service's rule in the schema: a query needs a character that is not whitespace to str.split();
# spelled out because JSON Schema's (ECMA) \s and Python's disagree (\x1c-\x1f, \x85, \ufeff).
NON_BLANK = r"[^\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
QueryText = Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS, pattern=NON_BLANK)]
ImageId = Annotated[str, Field(min_length=1, max_length=64)]


_ANNOTATED: Any = Annotated  # types made at run time from the declarations


def filter_type(spec: Filter[Any], *metadata: object) -> Any:
    """A filter's value type, annotated with `metadata` (pydantic's Field, FastAPI's Query or Form)."""
    return _ANNOTATED[(spec.value_type, *metadata)]


def _filter_field(spec: Filter[Any]) -> Any:
    """A filter's field in POST /search's `filters`: its type and limits, optional."""
    examples = [spec.example] if spec.example is not None else None
    value = filter_type(spec, Field(**spec.limits))
    return (value | None, Field(None, description=spec.help, examples=examples))


def filter_model() -> type[BaseModel]:
    """POST /search's `filters`: one optional field per declared filter (app/filters.py FILTERS)."""
    return create_model(
        "SearchFilters",
        __config__=ConfigDict(extra="forbid"),
        __doc__="Which images may be results; applied inside the search: a page is full when enough match.",
        **{spec.name: _filter_field(spec) for spec in FILTERS},
    )


if TYPE_CHECKING:  # made from the declarations when the module loads; a model to the type checker
    SearchFilters = BaseModel
else:
    SearchFilters = filter_model()


class SearchRequest(BaseModel):
    """Text search, with filters, exclusions and images to be like."""

    model_config = ConfigDict(extra="forbid")
    query: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_QUERY_CHARS,
        examples=["a cat", "cat + dog - grass"],
        description=QUERY_HELP + "; `a + b - c` adds and subtracts parts; optional when like_ids is given",
    )
    top_k: int = Field(10, ge=1, le=100, description=TOP_K_HELP)
    offset: int = Field(0, ge=0, le=10_000, description=OFFSET_HELP)
    mode: Mode = Field("hybrid", description=MODE_HELP)
    sort: Sort = Field("relevance", description=SORT_HELP)
    min_score: float | None = Field(None, ge=0.0, le=1.0, description=MIN_SCORE_HELP)
    filters: SearchFilters = Field(
        default_factory=SearchFilters,
        description="which images may be results: " + ", ".join(spec.name for spec in FILTERS),
    )
    exclude: list[QueryText] = Field(
        default_factory=list, max_length=MAX_PARTS, description="texts whose meaning is subtracted"
    )
    like_ids: list[ImageId] = Field(
        default_factory=list,
        max_length=MAX_PARTS,
        description="indexed images to look like (alone: more like these, the images themselves first)",
    )
    understand: bool = Field(True, description=UNDERSTAND_HELP)


class SearchResult(BaseModel):
    """One ranked image."""

    id: str
    score: float = Field(ge=0.0, le=1.0, description=SCORE_HELP)
    scores: dict[str, float] = Field(default_factory=dict, description=SCORES_HELP)
    source: str
    width: int
    height: int
    url: str
    thumbnail_url: str
    duplicates: int = Field(0, ge=0, description="near-duplicates of this image folded into it")
    duplicate_ids: list[str] = Field(
        default_factory=list, description="ids of those near-duplicates, best ranked first"
    )
    taken_at: str | None = Field(
        None, description="when it was taken (ISO 8601, the camera's local time; else the file's time)"
    )
    folder: str = Field("", description="its folder inside the collection, '/'-separated ('' at the root)")
    matched: list[str] = Field(
        default_factory=list,
        description="why it is here: semantic (its meaning), name, folder, metadata (the text it carries), "
        "place (taken in a place the query names), text (the text read in the picture), similar_named "
        "(hybrid: it looks like named images whose words match the query: `borrowed_from`), person (a person "
        "filter, given or read from the query, selected it: that person's face was found in it)",
    )
    borrowed_from: list[str] = Field(
        default_factory=list,
        description="ids of the named images it looks like and borrowed the matching words from "
        "(with `similar_named`)",
    )


class PlaceRead(BaseModel):
    """A place of the collection named in the query."""

    name: str = Field(description="the value of the `place` filter it stands for, e.g. 'Italy'")
    fields: list[str] = Field(description="which of city, region, country carry that name")
    use: Literal["filter", "preference"] = Field(
        description="filter: only photos taken there (the query names nothing else); preference: photos "
        "taken there rank higher, others still show"
    )
    why: str


class PhraseRead(BaseModel):
    """A phrase read from the query, as typed: what the page shows as a chip."""

    kind: Literal["date", "place", "person"]
    phrase: str


class PersonRef(BaseModel):
    """A person by id and name."""

    id: str
    name: str | None = None


class Understood(BaseModel):
    """What was read from the query: the words searched, the dates and the place (app/understand.py)."""

    text: str = Field(description="the words searched for meaning, without the phrases read")
    taken_after: str | None = Field(None, description="the first day read (inclusive), ISO")
    taken_before: str | None = Field(None, description="the last day read (inclusive), ISO")
    place: PlaceRead | None = None
    person: PersonRef | None = Field(
        None, description="the first person the user named that the query names (as in `people`)"
    )
    people: list[PersonRef] = Field(
        default_factory=list,
        description="every person the user named that the query names, in order: the `person` filter "
        "they became (the images showing them all)",
    )
    read: list[PhraseRead] = Field(default_factory=list, description="the phrases read, in query order")
    notes: list[str] = Field(
        default_factory=list, description="how a phrase was read, or why a reading was not applied"
    )


class SearchResponse(BaseModel):
    """Ranked images for a query."""

    query: str
    results: list[SearchResult]
    total: int = Field(
        description="how many images could be results: those the filters let through; with a relevance "
        "cutoff (`min_score`, or a date sort's default), those scoring at least it (counted up to 1,000)"
    )
    took_ms: float
    understood: Understood | None = Field(
        None, description="what was read from the query; null when reading is off or there are no words"
    )


class FilterInfo(BaseModel):
    """One filter a search takes, and how the page shows it (read from its declaration's attributes)."""

    model_config = ConfigDict(from_attributes=True)
    name: str = Field(description="its key in POST /search's `filters`")
    param: str = Field(description="its parameter in GET /search and POST /search/image (and the page's URL)")
    flag: str = Field(description="its option of `imgsearch search`")
    label: str = Field(description="the label of its control on the page")
    help: str
    control: Control = Field(description="the kind of control the page shows for it")
    repeatable: bool = Field(description="whether the parameter may be given more than once")
    choices: list[str] = Field(default_factory=list, description="the values a choice control offers")


class FiltersResponse(BaseModel):
    """Every filter a search takes, in the order the page shows them."""

    filters: list[FilterInfo]


class FolderCount(BaseModel):
    """A folder that directly holds images."""

    folder: str
    count: int


class FoldersResponse(BaseModel):
    """Every folder that directly holds indexed images, by name."""

    folders: list[FolderCount]


class Alternate(BaseModel):
    """Another original of the same shot, served as it is."""

    name: str = Field(description="its file name")
    format: str = Field(description="its format (CR2, NEF, DNG…)")
    media_type: str
    url: str


class PlaceInfo(BaseModel):
    """The place a GPS position names (GeoNames' cities of 1,000 people or more, ISO country names)."""

    city: str | None = Field(description="the city or town a person would name; null far from any")
    region: str | None = Field(description="its first-level region (state, province)")
    country: str
    country_code: str = Field(description="ISO 3166-1 alpha-2")
    local_city: str | None = Field(None, description="the city's own name, when the gazetteer has one")


class ImageMetadataResponse(BaseModel):
    """What an indexed image's file says about itself, as stored at build time."""

    id: str
    source: str
    folder: str
    name: str
    format: str | None
    width: int
    height: int
    taken_at: str | None
    taken_at_source: str | None = Field(description="exif_original, exif or mtime")
    camera_make: str | None
    camera_model: str | None
    latitude: float | None
    longitude: float | None
    title: str | None
    description: str | None
    keywords: list[str]
    place: PlaceInfo | None = Field(
        None, description="where it was taken, named from its GPS position offline; null without GPS"
    )
    view_url: str = Field(description="a JPEG of it any browser shows (the original itself when it can)")
    alternates: list[Alternate] = Field(
        default_factory=list,
        description="other originals of the same shot: the camera RAW beside a JPEG (same folder and stem)",
    )
    text_in_image: str | None = Field(
        None,
        description="the text read in the picture (OCR), a line per row of text; '' when none was found, "
        "null when it was not read (built with --no-ocr, or the build's text stage has not reached it)",
    )
    people: list[PersonRef] = Field(
        default_factory=list, description="the named people whose faces were found in it (built with --faces)"
    )


class PersonInfo(BaseModel):
    """One person: a group of faces, named once a user names it."""

    id: str = Field(description="stable across rebuilds; the value of the `person` filter")
    name: str | None = Field(None, description="the name a user gave; null while unnamed")
    faces: int
    images: int
    thumbnail: str = Field(description="the URL of a JPEG of the face that stands for the person")


class PeopleResponse(BaseModel):
    """The people of the index, largest first."""

    people: list[PersonInfo]
    hint: str | None = Field(None, description="why the list is empty, when it is")


class FaceInfo(BaseModel):
    """One face found in an image."""

    box: list[int] = Field(description="x, y, width, height in the original image's pixels (upright)")
    person: str | None = Field(description="the id of the person it belongs to; null when in none")
    score: float = Field(description="the detector's confidence")


class FacesResponse(BaseModel):
    """The faces found in one image."""

    faces: list[FaceInfo]
    hint: str | None = Field(None, description="why there are none, when the index has no people")


class Rename(BaseModel):
    """A person's new name."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, description="the name; not blank")


class Merge(BaseModel):
    """The person another one is folded into."""

    model_config = ConfigDict(extra="forbid")
    into: str = Field(min_length=1, max_length=200, description="the id or name of the person kept")


class DescribeRequest(BaseModel):
    """Describe an indexed image (`image_id`) or write a description from a text (`query`)."""

    model_config = ConfigDict(extra="forbid")
    image_id: str | None = Field(None, min_length=1, max_length=64, description=IMAGE_ID_HELP)
    query: str | None = Field(
        None, min_length=1, max_length=MAX_QUERY_CHARS, description="a text to write a description from"
    )


class Label(BaseModel):
    """A class the image model saw, with its probability."""

    label: str
    score: float


class EvidenceItem(BaseModel):
    """One phrase of the description and what it rests on."""

    phrase: str = Field(description="the words of the description this item backs, e.g. 'tabby cat'")
    source: str = Field(
        description="'label': a classifier (or CLIP zero-shot) label; 'kind': a WordNet kind whose labels "
        "share the probability ('cat' for five cat breeds); 'scene': a place label; 'reference': captions "
        "of the nearest reference pictures that name the concept; 'pixels': the picture's own pixels "
        "(medium, colour); 'index': what the index knows of the image (the text read in it, its place, "
        "its date)"
    )
    labels: list[str] = Field(description="the labels behind the phrase")
    probability: float = Field(description="their total probability (plus agreeing reference weight)")


class DescribeResponse(BaseModel):
    """A one-sentence description and the labels behind it."""

    description: str = Field(
        description="for an image: a sentence naming the most specific concept the evidence is sure of, "
        "every content word backed by `evidence` (hedged with 'probably' / 'perhaps' / 'or' when the models "
        "are unsure); in text mode (`query`): one sentence starting with the query's words, completed by "
        "the language model only with checked words; it describes no image"
    )
    labels: list[Label]
    confidence: float | None = Field(
        None, description="probability behind the sentence's subject (0–1); null in text mode"
    )
    evidence: list[EvidenceItem] = Field(default_factory=list, description="empty in text mode")
    generated: bool = Field(False, description="true in text mode: the sentence is generated text")
    took_ms: float


class Ready(BaseModel):
    """Readiness report."""

    status: str
    profile: str | None = None
    device: str | None = None
    images: int | None = None
    generation: str | None = Field(
        None, description="the index generation served (generations/<name> in the index folder)"
    )
    detail: str | None = None
    describe: str | None = Field(
        None,
        description="the language model behind /describe: ready, loading (search works meanwhile), "
        "failed or off",
    )
    read_key: bool = Field(False, description="whether every endpoint but /healthz needs the read key")
    warnings: list[str] = Field(
        default_factory=list, description="what an operator should know, e.g. an open network address"
    )


class ErrorBody(BaseModel):
    """Every error response."""

    detail: str
    error: str
