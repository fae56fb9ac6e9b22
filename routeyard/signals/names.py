"""PERSON and LOCATION names: a small token tagger, pure numpy at run time.

A multinomial logistic regression over sparse token features (the word, its shape, affixes,
neighbouring words, cue words, gazetteer membership) gives per-token BIO probabilities; a
Viterbi pass that forbids an I- tag without its B- turns them into spans. Trained by
`scripts/train_names.py`; the weights, feature vocabulary and gazetteers ship as one `.npz`
(no pickle) in `models/names/`, loaded on first use, so importing this module costs nothing.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

MODEL_DIR = Path(__file__).parent / "models" / "names"
BUILTIN_MODEL = MODEL_DIR / "tagger.npz"
TAGS = ("O", "B-PERSON", "I-PERSON", "B-LOCATION", "I-LOCATION")

# Words with inner apostrophes or hyphens stay whole (O'Brien, Jean-Luc); any other
# non-space character is a token of its own (@, #, punctuation).
_TOKEN = re.compile(r"\w+(?:['\u2019\-]\w+)*|[^\w\s]")
_SENTENCE_END = frozenset({".", "!", "?", ":", ";", '"', "\u201c", "\u201d", "|", "-", "(", ")"})
_MAX_PLACE_WORDS = 4  # longest multi-word place name looked up ("Rio de Janeiro")
# Features the tagger sees: a frozen list, so a model trained on other features fails loudly.
FEATURE_VERSION = 1


@dataclass(frozen=True, slots=True)
class NameSpan:
    start: int
    end: int
    label: str
    score: float


def tokenize(text: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(text)]


@dataclass(frozen=True)
class Gazetteer:
    """Lower-cased name lists: given names, surnames, and places (multi-word allowed)."""

    first: frozenset[str]
    last: frozenset[str]
    places: frozenset[str]


def _shape(word: str) -> str:
    """Character classes with repeats collapsed: 'McDonald' → 'XxXx', 'A380' → 'Xd'."""
    out: list[str] = []
    for ch in word:
        c = "X" if ch.isupper() else "x" if ch.islower() else "d" if ch.isdigit() else ch
        if not out or out[-1] != c:
            out.append(c)
    return "".join(out[:6])


def _word_class(word: str) -> str:
    if word.istitle():
        return "T"
    if word.isupper():
        return "U" if len(word) > 1 else "T"
    if word.islower():
        return "L"
    return "O"


def _lexical(word: str, gaz: Gazetteer) -> tuple[str, ...]:
    """Features of the word alone (no context): cached per gazetteer."""
    low = word.lower()
    cls = _word_class(word)
    feats = ["b", f"w={low}", f"s={_shape(word)}", f"c={cls}", f"p2={low[:2]}", f"p3={low[:3]}",
             f"x2={low[-2:]}", f"x3={low[-3:]}", f"x4={low[-4:]}",
             f"n={min(len(word), 10)}"]
    for tag, names in (("gf", gaz.first), ("gl", gaz.last), ("gp", gaz.places)):
        if low in names:
            feats.append(tag)
            feats.append(f"{tag}&{cls}")  # a capitalised gazetteer hit means far more
    return tuple(feats)


class _FeatureCache:
    """Per-gazetteer memo of lexical features: most words of a prompt repeat across prompts."""

    def __init__(self, gaz: Gazetteer, size: int = 65536) -> None:
        self.gaz = gaz
        self.lexical = lru_cache(maxsize=size)(self._lexical)
        # First words of multi-word places: most tokens start none, and skip the n-gram joins.
        self.place_heads = frozenset(p.split(" ", 1)[0] for p in gaz.places if " " in p)

    def _lexical(self, word: str) -> tuple[str, ...]:
        return _lexical(word, self.gaz)


def _place_marks(lows: Sequence[str], places: frozenset[str], heads: frozenset[str]
                 ) -> list[str]:
    """'B'/'I' for tokens inside a multi-word gazetteer place (longest match first)."""
    marks = [""] * len(lows)
    i = 0
    while i < len(lows):
        if lows[i] not in heads:
            i += 1
            continue
        for n in range(min(_MAX_PLACE_WORDS, len(lows) - i), 1, -1):
            if " ".join(lows[i:i + n]) in places:
                marks[i] = "B"
                for j in range(i + 1, i + n):
                    marks[j] = "I"
                i += n - 1
                break
        i += 1
    return marks


def sentence_features(words: Sequence[str], cache: _FeatureCache) -> list[list[str]]:
    """Feature strings per token: its own, its neighbours', and gazetteer context."""
    lows = [w.lower() for w in words]
    classes = [_word_class(w) for w in words]
    lex = [cache.lexical(w) for w in words]
    marks = _place_marks(lows, cache.gaz.places, cache.place_heads)
    first, last = cache.gaz.first, cache.gaz.last
    n = len(words)
    out: list[list[str]] = []
    for i in range(n):
        prev = lows[i - 1] if i else "<s>"
        prev2 = lows[i - 2] if i > 1 else "<s>"
        nxt = lows[i + 1] if i + 1 < n else "</s>"
        nxt2 = lows[i + 2] if i + 2 < n else "</s>"
        pcls = classes[i - 1] if i else "S"
        ncls = classes[i + 1] if i + 1 < n else "E"
        cls = classes[i]
        feats = list(lex[i])
        feats += [f"w-1={prev}", f"w-2={prev2}", f"w+1={nxt}", f"w+2={nxt2}",
                  f"c-1={pcls}", f"c+1={ncls}", f"cc={pcls}{cls}{ncls}",
                  f"w-1&c={prev}&{cls}", f"w+1&c={nxt}&{cls}"]
        if not i or prev in _SENTENCE_END:
            feats.append(f"bos&{cls}")  # a capital after a full stop says little
        if marks[i]:
            feats.append(f"gpm={marks[i]}&{cls}")
        if i and lows[i - 1] in first:
            feats.append(f"gf-1&{pcls}{cls}")
        if i + 1 < n and lows[i + 1] in last:
            feats.append(f"gl+1&{cls}{ncls}")
        out.append(feats)
    return out


def _viterbi(logp: np.ndarray, allowed: np.ndarray) -> list[int]:
    """Best tag path under the BIO constraint; `allowed` is a log-mask (0 or -inf)."""
    n = logp.shape[0]
    score = logp[0] + allowed[0]  # row 0: what may start a text (not I-)
    back = np.zeros((n, logp.shape[1]), dtype=np.int64)
    for t in range(1, n):
        cand = score[:, None] + allowed[1:]
        back[t] = cand.argmax(axis=0)
        score = cand.max(axis=0) + logp[t]
    path = [int(score.argmax())]
    for t in range(n - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return path[::-1]


def _transition_mask() -> np.ndarray:
    """Row 0: start → tag; rows 1..: previous tag → tag. I-X only after B-X or I-X."""
    k = len(TAGS)
    mask = np.zeros((k + 1, k))
    for j, tag in enumerate(TAGS):
        if tag.startswith("I-"):
            ent = tag[2:]
            mask[0, j] = -np.inf
            for i, prev in enumerate(TAGS):
                if prev[2:] != ent:
                    mask[i + 1, j] = -np.inf
    return mask


class NameTagger:
    """Tags PERSON and LOCATION spans in text."""

    def __init__(self, vocab: Iterable[str], weights: np.ndarray, bias: np.ndarray,
                 gazetteer: Gazetteer) -> None:
        self.index = {f: i for i, f in enumerate(vocab)}
        self.weights = np.asarray(weights, dtype=np.float32)
        self.bias = np.asarray(bias, dtype=np.float32)
        if self.weights.shape != (len(self.index), len(TAGS)):
            raise ValueError(f"weights {self.weights.shape} do not fit {len(self.index)} "
                             f"features x {len(TAGS)} tags")
        self._padded = np.vstack([self.weights, np.zeros((1, len(TAGS)), np.float32)])
        self.cache = _FeatureCache(gazetteer)
        self._allowed = _transition_mask()

    @classmethod
    def load(cls, path: str | Path = BUILTIN_MODEL) -> NameTagger:
        with np.load(path, allow_pickle=False) as data:
            version = int(data["feature_version"])
            if version != FEATURE_VERSION or tuple(data["tags"].tolist()) != TAGS:
                raise ValueError(f"{path}: trained for feature version {version}, tags "
                                 f"{data['tags'].tolist()}; this code expects "
                                 f"{FEATURE_VERSION}, {list(TAGS)}")
            gaz = Gazetteer(*(frozenset(data[k].tolist()) for k in ("first", "last", "places")))
            return cls(data["vocab"].tolist(), data["weights"], data["bias"], gaz)

    def token_probs(self, words: Sequence[str]) -> np.ndarray:
        """(tokens, tags) probabilities."""
        feats = sentence_features(words, self.cache)
        index, unseen = self.index, len(self.index)  # an unseen feature hits the zero row
        ids = [index.get(f, unseen) for fs in feats for f in fs]
        starts = np.zeros(len(feats), dtype=np.int64)
        np.cumsum([len(fs) for fs in feats[:-1]], out=starts[1:])
        logits = np.add.reduceat(self._padded[np.asarray(ids)], starts, axis=0)
        logits += self.bias
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        return probs

    def tag(self, text: str) -> list[NameSpan]:
        tokens = tokenize(text)
        if not tokens:
            return []
        probs = self.token_probs([w for _, _, w in tokens])
        path = _viterbi(np.log(probs + 1e-9), self._allowed)
        spans: list[NameSpan] = []
        open_at: int | None = None
        for t, tag in enumerate([*path, 0]):  # a trailing O closes the last span
            name = TAGS[tag]
            # A name does not run on over a line break ("Jane\nMain Street").
            inside = name[:2] == "I-" and "\n" not in text[tokens[t - 1][1]:tokens[t][0]]
            if open_at is not None and not inside:
                label = TAGS[path[open_at]][2:]
                score = float(probs[np.arange(open_at, t), path[open_at:t]].mean())
                spans.append(NameSpan(tokens[open_at][0], tokens[t - 1][1], label, score))
                open_at = None
            if name != "O" and not inside:
                open_at = t
        return spans


_lock = threading.Lock()
_tagger: NameTagger | None = None


def builtin_tagger() -> NameTagger:
    """The shipped tagger, loaded once on first use."""
    global _tagger
    if _tagger is None:
        with _lock:
            if _tagger is None:
                _tagger = NameTagger.load()
    return _tagger


@lru_cache(maxsize=8)
def find_names(text: str) -> tuple[NameSpan, ...]:
    """PERSON and LOCATION spans; memoised so that asking for both labels tags once."""
    if not any(c.isalpha() for c in text):
        return ()
    return tuple(builtin_tagger().tag(text))
