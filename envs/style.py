"""World style: what a text prompt can say about the teacher world, and back.

A `Style` is three words: a biome, a time of day and a weather. The teacher
renders it; captions describe it in varied wording (templates x synonyms) so a
text-conditioned model cannot memorise one sentence per style; `parse_prompt`
maps free text back to a style by keywords.

Wording is split in two disjoint sets: the *train* templates and synonyms that
recorded data uses, and the *held-out* paraphrases kept for evaluating prompt
adherence on wording the model never saw. `parse_prompt` understands both.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace

import numpy as np

BIOMES = ("grassland", "forest", "desert", "snow", "swamp", "volcanic")
TIMES_OF_DAY = ("dawn", "noon", "dusk", "night")
WEATHERS = ("clear", "rain", "snow", "fog")

# Words a caption may use for each value. The first train word is the value's
# canonical phrase. Held-out words never appear in recorded captions.
_TRAIN_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "biome": {
        "grassland": ("grassland", "green meadow", "grassy plains", "open prairie"),
        "forest": ("forest", "dense woods", "pine forest", "woodland"),
        "desert": ("desert", "sandy dunes", "arid wasteland", "dry sand flats"),
        "snow": ("snowfield", "frozen tundra", "arctic plain", "icy wilderness"),
        "swamp": ("swamp", "murky marsh", "boggy wetland", "mossy fen"),
        "volcanic": ("volcanic land", "lava fields", "ashen wasteland", "volcano slopes"),
    },
    "time_of_day": {
        "dawn": ("at dawn", "at sunrise", "in the early morning"),
        "noon": ("at noon", "at midday", "in broad daylight"),
        "dusk": ("at dusk", "at sunset", "in the evening"),
        "night": ("at night", "at midnight", "under a dark sky"),
    },
    "weather": {
        "clear": ("under clear skies", "on a sunny day", "in calm weather"),
        "rain": ("in the rain", "during a rainstorm", "with steady rain falling"),
        "snow": ("while snow falls", "in a snowstorm", "with snowflakes drifting down"),
        "fog": ("in thick fog", "shrouded in mist", "in a hazy fog"),
    },
}
_HELDOUT_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "biome": {
        "grassland": ("rolling savanna", "lush pasture"),
        "forest": ("thick timberland", "old-growth grove"),
        "desert": ("scorching badlands", "barren sahara"),
        "snow": ("glacial expanse", "polar wastes"),
        "swamp": ("stagnant bayou", "soggy quagmire"),
        "volcanic": ("smouldering caldera", "magma plains"),
    },
    "time_of_day": {
        "dawn": ("at daybreak", "as first light breaks"),
        "noon": ("under the high sun", "in the middle of the day"),
        "dusk": ("at twilight", "as the sun goes down"),
        "night": ("by moonlight", "in the dead of night"),
    },
    "weather": {
        "clear": ("beneath a cloudless sky", "in fair weather"),
        "rain": ("amid pouring showers", "in a heavy downpour"),
        "snow": ("in a blizzard", "amid swirling flurries"),
        "fog": ("under a murky haze", "veiled in vapour"),
    },
}
_TRAIN_TEMPLATES = (
    "{biome} {time_of_day}, {weather}",
    "a top-down view of a {biome} {time_of_day} {weather}",
    "exploring the {biome} {weather}, {time_of_day}",
    "{time_of_day}, a {biome} {weather}",
    "pixel art {biome} {time_of_day} {weather}",
    "walking through a {biome} {time_of_day} {weather}",
)
_HELDOUT_TEMPLATES = (
    "bird's-eye game scene: {biome}, {time_of_day}, {weather}",
    "an overhead map of a {biome} seen {time_of_day} {weather}",
)

# Extra prompt words that only parse (short forms a player types).
_PARSE_ONLY: dict[str, dict[str, tuple[str, ...]]] = {
    "biome": {
        "grassland": ("grass", "meadow", "plains", "prairie", "field"),
        "forest": ("woods", "trees", "jungle", "pines"),
        "desert": ("sand", "dunes", "sandy", "arid"),
        "snow": ("tundra", "arctic", "frozen", "ice", "icy", "snow"),
        "swamp": ("marsh", "bog", "wetland", "fen", "bayou"),
        "volcanic": ("volcano", "lava", "magma", "ash", "ashen", "volcanic"),
    },
    "time_of_day": {
        "dawn": ("dawn", "sunrise", "morning", "daybreak"),
        "noon": ("noon", "midday", "day", "daytime", "daylight"),
        "dusk": ("dusk", "sunset", "evening", "twilight"),
        "night": ("night", "midnight", "moonlight", "dark", "moonlit"),
    },
    "weather": {
        "clear": ("clear", "sunny", "cloudless"),
        "rain": ("rain", "rainy", "raining", "rainstorm", "storm", "showers", "drizzle", "downpour"),
        "snow": ("snowy", "snowing", "snowfall", "snowflakes", "blizzard", "flurries", "snowstorm"),
        "fog": ("fog", "foggy", "mist", "misty", "haze", "hazy"),
    },
}

FIELDS = ("biome", "time_of_day", "weather")
CHOICES = {"biome": BIOMES, "time_of_day": TIMES_OF_DAY, "weather": WEATHERS}


@dataclass(frozen=True)
class Style:
    """What the teacher world looks like; every field is validated on creation."""

    biome: str = "grassland"
    time_of_day: str = "noon"
    weather: str = "clear"

    def __post_init__(self) -> None:
        for name in FIELDS:
            value = getattr(self, name)
            if value not in CHOICES[name]:
                raise ValueError(
                    f"unknown {name} {value!r}; valid choices: {', '.join(CHOICES[name])}"
                )

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Style":
        if not isinstance(d, dict):
            raise ValueError(f"a style must be a dict with keys {FIELDS}, got {type(d).__name__}")
        unknown = set(d) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown style keys {sorted(unknown)}; valid keys: {', '.join(FIELDS)}")
        return cls(**{k: d[k] for k in FIELDS if k in d})

    def replace(self, **changes) -> "Style":
        return replace(self, **changes)


def sample_style(rng: np.random.Generator) -> Style:
    """A uniformly random style."""
    return Style(*(str(rng.choice(CHOICES[f])) for f in FIELDS))


def caption(style: Style, rng: np.random.Generator, heldout: bool = False, part: str = "all",
            omit: tuple[str, ...] = ()) -> str:
    """A sentence describing `style`, wording drawn from the train or held-out set. part (train
    wording only): "all"; "fit", all but each value's last train word and the last two train
    templates; "check", only those (a split of the train wording to judge a fit on words it did
    not see, leaving the held-out paraphrases untouched). omit: fields the sentence leaves out
    ("a desert at dusk", what a player types)."""
    words = _HELDOUT_WORDS if heldout else _TRAIN_WORDS
    templates = _HELDOUT_TEMPLATES if heldout else _TRAIN_TEMPLATES
    if part not in ("all", "fit", "check") or (heldout and part != "all"):
        raise ValueError(f"part must be 'all', 'fit' or 'check' (train wording only), got {part!r}")
    if part != "all":
        pick = slice(None, -1) if part == "fit" else slice(-1, None)
        words = {f: {v: ws[pick] for v, ws in values.items()} for f, values in words.items()}
        templates = templates[:-2] if part == "fit" else templates[-2:]
    template = templates[rng.integers(len(templates))]
    fill = {f: words[f][getattr(style, f)][rng.integers(len(words[f][getattr(style, f)]))] for f in FIELDS}
    if not omit:
        return template.format(**fill)
    text = template.format(**{f: "" if f in omit else w for f, w in fill.items()})
    return re.sub(r"\s+([,:])", r"\1", " ".join(text.split())).strip(" ,:")


def all_captions(style: Style, heldout: bool = False) -> list[str]:
    """Every caption the generator can produce for `style` (for evaluation sets)."""
    words = _HELDOUT_WORDS if heldout else _TRAIN_WORDS
    templates = _HELDOUT_TEMPLATES if heldout else _TRAIN_TEMPLATES
    out = []
    for t in templates:
        for b in words["biome"][style.biome]:
            for d in words["time_of_day"][style.time_of_day]:
                for w in words["weather"][style.weather]:
                    out.append(t.format(biome=b, time_of_day=d, weather=w))
    return out


def _phrase_table() -> dict[str, list[tuple[str, str]]]:
    """field -> [(phrase, value)] longest phrase first, so 'snowstorm' beats 'snow'."""
    table: dict[str, list[tuple[str, str]]] = {f: [] for f in FIELDS}
    for source in (_TRAIN_WORDS, _HELDOUT_WORDS, _PARSE_ONLY):
        for field, values in source.items():
            for value, phrases in values.items():
                for p in phrases:
                    # Strip the function words of time/weather phrases ("at dawn" -> "dawn").
                    core = re.sub(r"^(at|in|on|under|while|with|during|by|as|amid|beneath|veiled in|shrouded in) (the |a |an )?", "", p)
                    table[field].append((core.lower(), value))
    for field in table:
        table[field].sort(key=lambda pv: -len(pv[0]))
    return table


_PHRASES = _phrase_table()


def parse_prompt(text: str, default: Style | None = None) -> Style:
    """Map a free-text prompt to a Style by keywords; unnamed fields keep `default`.

    Raises ValueError when a non-empty prompt names nothing the world knows, with
    examples of words that work. An empty prompt returns `default` unchanged.
    """
    if not isinstance(text, str):
        raise ValueError(f"a prompt must be a string, got {type(text).__name__}")
    default = default or Style()
    text_l = " " + re.sub(r"[^a-z\-' ]+", " ", text.lower()) + " "
    if not text.strip():
        return default
    found: dict[str, str] = {}
    for field in ("weather", "time_of_day", "biome"):  # weather first: 'snowstorm' is weather, 'snow' a biome
        for phrase, value in _PHRASES[field]:
            pattern = f" {phrase} "
            if pattern in text_l:
                found[field] = value
                text_l = text_l.replace(pattern, " ")  # a phrase counts for one field only
                break
    if not found:
        raise ValueError(
            f"prompt {text!r} names no biome, time of day or weather the teacher knows; "
            f"biomes: {', '.join(BIOMES)}; times: {', '.join(TIMES_OF_DAY)}; "
            f"weather: {', '.join(WEATHERS)} (e.g. 'pine forest at night in the fog')"
        )
    return default.replace(**found)
