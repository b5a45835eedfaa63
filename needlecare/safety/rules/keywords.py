"""Free-text keyword matching for the rules (``matches_keywords``): tolerant, because a missed warning sign
costs more than an extra review (keywords only add escalations).

Text and keywords are compared as words after :func:`normalise`: case-folded, accents removed, apostrophes
dropped (``can't`` = ``cant``), ``&`` read as ``and``, every other punctuation mark a space. A keyword is one or
more words; a final ``*`` makes its last word a prefix (``faint*`` matches ``fainted``, ``fainting``). A word of
five letters or more also matches a misspelling one edit away (a letter added, dropped, changed, or two
neighbours swapped), two edits for eleven letters or more, as long as the first letter is right (so ``never`` is
not ``fever``); shorter words (``pus``, ``bled``, ``weak``) must be exact, where one edit would make ordinary
words match.

Each keyword also stands for its synonyms, read from ``rules/keyword_synonyms.toml`` (:func:`load_synonyms`,
checked when loaded): lay words and common misspellings, each group with its reason. The same file lists
ordinary words (``heard``, ``number``, ``fewer``) that a keyword would otherwise catch as a misspelling or by
its prefix: such a word only matches a keyword that is exactly that word.
"""

import re
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from needlecare.core.datafile import load_toml

SYNONYMS_PATH: Path = Path(__file__).resolve().parents[3] / "rules" / "keyword_synonyms.toml"
FUZZY_MIN_LENGTH = 5
TWO_EDITS_MIN_LENGTH = 11

_FORM = re.compile(r"\{([a-z_]+)\}")
_Phrase = Annotated[str, Field(min_length=1, max_length=80)]


class SynonymsError(ValueError):
    """A synonyms file that cannot be used; the message names the file, the field and what is wrong."""


def normalise(text: str) -> str:
    """Text as keywords see it: lower case, no accents, no apostrophes, ``&`` as ``and``, punctuation as spaces."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    for apostrophe in ("'", "\u2019", "\u2018", "`", "\u00b4"):
        plain = plain.replace(apostrophe, "")
    plain = plain.replace("&", " and ")
    keep = "".join(ch if ch.isalnum() or ch == "*" else " " for ch in plain)
    return " ".join(keep.split())


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance (insert, delete, substitute, swap neighbours), cut off above ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, start=1):
            cost = 0 if ca == cb else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


def _allowed_edits(word: str) -> int:
    if len(word) >= TWO_EDITS_MIN_LENGTH:
        return 2
    return 1 if len(word) >= FUZZY_MIN_LENGTH else 0


def _loose_match(token: str, word: str, *, prefix: bool) -> bool:
    """``token`` matches ``word`` by its prefix or as a misspelling (the ordinary-word list not consulted)."""
    if token == word or (prefix and token.startswith(word)):
        return True
    edits = _allowed_edits(word)
    if edits == 0 or token[:1] != word[:1]:
        return False
    if not prefix:
        return edit_distance(token, word, edits) <= edits
    stems = {token[:n] for n in range(max(1, len(word) - edits), len(word) + edits + 1)}
    return any(edit_distance(stem, word, edits) <= edits for stem in stems)


def word_matches(token: str, word: str, *, prefix: bool) -> bool:
    """Does one word of the text match one word of a keyword? An ordinary word (see the module docstring)
    matches only a keyword word equal to it."""
    if token == word:
        return True
    if _is_ordinary(token):
        return False
    return _loose_match(token, word, prefix=prefix)


# ---- The synonyms file ---------------------------------------------------------------------------------


class SynonymGroup(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    keyword: _Phrase
    words: list[_Phrase] = Field(min_length=1)
    reason: str = Field(min_length=10)


class OrdinaryWords(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    words: list[_Phrase] = Field(min_length=1)
    reason: str = Field(min_length=10)

    @field_validator("words")
    @classmethod
    def _single_words(cls, words: list[str]) -> list[str]:
        for word in words:
            if len(normalise(word).rstrip("*").split()) != 1 or "*" in normalise(word).rstrip("*"):
                raise ValueError(f"{word!r}: an ordinary word is one word, optionally ending in *")
        return words


class SynonymsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: str = Field(min_length=1)
    forms: dict[Annotated[str, Field(pattern=r"^[a-z_]+$")], list[_Phrase]] = {}
    synonyms: list[SynonymGroup] = Field(min_length=1)
    ordinary: list[OrdinaryWords] = []


class Synonyms(BaseModel):
    """The checked synonyms file: every keyword's expanded, normalised synonyms and the ordinary words."""

    model_config = ConfigDict(frozen=True)
    version: str
    by_keyword: dict[str, tuple[str, ...]]
    ordinary_exact: frozenset[str]
    ordinary_prefixes: tuple[str, ...]


def _expand(phrase: str, forms: dict[str, list[str]]) -> list[str]:
    """``phrase`` with each ``{name}`` replaced by every entry of that form (unknown names raise ValueError)."""
    found = _FORM.search(phrase)
    if found is None:
        return [phrase]
    name = found.group(1)
    if name not in forms:
        raise ValueError(f"unknown form {{{name}}}; allowed: {', '.join(sorted(forms)) or 'none defined'}")
    head, tail = phrase[: found.start()], phrase[found.end() :]
    return [out for entry in forms[name] for out in _expand(head + entry + tail, forms)]


def _check(raw: SynonymsFile) -> tuple[Synonyms, list[str]]:
    problems: list[str] = []
    by_keyword: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    for index, group in enumerate(raw.synonyms):
        keyword = normalise(group.keyword)
        if not keyword.rstrip("*").strip():
            problems.append(f"synonyms[{index}].keyword: {group.keyword!r} has no letters or digits")
            continue
        for j, word in enumerate(group.words):
            try:
                phrases = _expand(word, raw.forms)
            except ValueError as exc:
                problems.append(f"synonyms[{index}].words[{j}]: {exc}")
                continue
            for phrase in phrases:
                normal = normalise(phrase)
                if not normal.rstrip("*").strip() or "*" in normal.rstrip("*"):
                    problems.append(f"synonyms[{index}].words[{j}]: {phrase!r}: words, with * only at the end")
                elif normal in seen:
                    problems.append(f"synonyms[{index}].words[{j}]: {phrase!r} is listed twice (also {seen[normal]})")
                else:
                    seen[normal] = f"synonyms[{index}]"
                    by_keyword.setdefault(keyword, []).append(normal)
    exact: set[str] = set()
    prefixes: list[str] = []
    for index, ordinary in enumerate(raw.ordinary):
        for j, word in enumerate(ordinary.words):
            normal = normalise(word)
            if normal.rstrip("*") in seen or normal in by_keyword:
                problems.append(f"ordinary[{index}].words[{j}]: {word!r} is also a keyword or synonym")
            if normal.endswith("*"):
                prefixes.append(normal[:-1])
            else:
                exact.add(normal)
    synonyms = Synonyms(
        version=raw.version,
        by_keyword={k: tuple(v) for k, v in by_keyword.items()},
        ordinary_exact=frozenset(exact),
        ordinary_prefixes=tuple(prefixes),
    )
    return synonyms, problems


def load_synonyms(path: Path = SYNONYMS_PATH) -> Synonyms:
    """Read and check a synonyms file; raises SynonymsError naming the file and every problem."""
    synonyms, problems = _check(load_toml(path, SynonymsFile, SynonymsError))
    if problems:
        raise SynonymsError(f"{path}: " + "; ".join(problems))
    return synonyms


@lru_cache(maxsize=1)
def get_synonyms() -> Synonyms:
    """The shipped synonyms, loaded once."""
    return load_synonyms(SYNONYMS_PATH)


def _is_ordinary(token: str) -> bool:
    synonyms = get_synonyms()
    return token in synonyms.ordinary_exact or token.startswith(synonyms.ordinary_prefixes)


# ---- Matching ------------------------------------------------------------------------------------------


@lru_cache(maxsize=512)
def _parse(keyword: str) -> tuple[tuple[str, ...], bool]:
    normal = normalise(keyword)
    return tuple(normal.rstrip("*").split()), normal.endswith("*")


@lru_cache(maxsize=64)
def _phrases(keywords: tuple[str, ...]) -> tuple[tuple[tuple[str, ...], bool], ...]:
    by_keyword = get_synonyms().by_keyword
    out: list[tuple[tuple[str, ...], bool]] = []
    for keyword in keywords:
        normal = normalise(keyword)
        for phrase in (normal, *by_keyword.get(normal, ())):
            parsed = _parse(phrase)
            if parsed[0] and parsed not in out:
                out.append(parsed)
    return tuple(out)


def matching_phrase(text: str, keywords: list[str]) -> str | None:
    """The first keyword or synonym (normalised) found in ``text`` as consecutive words, or None."""
    tokens = normalise(text).replace("*", " ").split()
    for words, prefix in _phrases(tuple(keywords)):
        last = len(words) - 1
        for start in range(len(tokens) - last):
            if all(word_matches(tokens[start + k], w, prefix=prefix and k == last) for k, w in enumerate(words)):
                return " ".join(words) + ("*" if prefix else "")
    return None


def matches_any(text: str, keywords: list[str]) -> bool:
    """True when any keyword, or a synonym of one, occurs in ``text`` (tolerating small misspellings)."""
    return matching_phrase(text, keywords) is not None


def ordinary_words_caught(keywords: list[str], synonyms: Synonyms) -> dict[str, str]:
    """Each exact ordinary word → the keyword or synonym that would catch it without the list (for checks)."""
    caught: dict[str, str] = {}
    phrases = [_parse(p) for k in keywords for p in (normalise(k), *synonyms.by_keyword.get(normalise(k), ()))]
    for token in sorted(synonyms.ordinary_exact | set(synonyms.ordinary_prefixes)):
        for words, prefix in phrases:
            if any(_loose_match(token, w, prefix=prefix and k == len(words) - 1) for k, w in enumerate(words)):
                caught[token] = " ".join(words) + ("*" if prefix else "")
                break
    return caught
