"""Free-text keyword matching for the rules (``matches_keywords``): tolerant, because a missed warning sign
costs more than an extra review (keywords only add escalations).

Text and keywords are compared as words after :func:`normalise`: case-folded, accents removed, apostrophes
dropped (``can't`` = ``cant``), every other punctuation mark a space. A keyword is one or more words; a final
``*`` makes its last word a prefix (``faint*`` matches ``fainted``, ``fainting``). A word of five letters or
more also matches a misspelling one edit away (a letter added, dropped, changed, or two neighbours swapped),
two edits for eleven letters or more, as long as the first letter is right (so ``never`` is not ``fever``);
shorter words (``pus``, ``bled``, ``weak``) must be exact, where one edit would make ordinary words match.
"""

import unicodedata
from functools import lru_cache

FUZZY_MIN_LENGTH = 5
TWO_EDITS_MIN_LENGTH = 11


def normalise(text: str) -> str:
    """Text as keywords see it: lower case, no accents, no apostrophes, punctuation as spaces."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    for apostrophe in ("'", "\u2019", "\u2018", "`", "\u00b4"):
        plain = plain.replace(apostrophe, "")
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


def word_matches(token: str, word: str, *, prefix: bool) -> bool:
    """Does one word of the text match one word of a keyword?"""
    if token == word or (prefix and token.startswith(word)):
        return True
    edits = _allowed_edits(word)
    if edits == 0 or token[:1] != word[:1]:
        return False
    if not prefix:
        return edit_distance(token, word, edits) <= edits
    stems = {token[:n] for n in range(max(1, len(word) - edits), len(word) + edits + 1)}
    return any(edit_distance(stem, word, edits) <= edits for stem in stems)


@lru_cache(maxsize=512)
def _parse(keyword: str) -> tuple[tuple[str, ...], bool]:
    normal = normalise(keyword)
    return tuple(normal.rstrip("*").split()), normal.endswith("*")


def matches_any(text: str, keywords: list[str]) -> bool:
    """True when any keyword occurs in ``text`` as consecutive words (tolerating small misspellings)."""
    tokens = normalise(text).replace("*", " ").split()
    for keyword in keywords:
        words, prefix = _parse(keyword)
        if not words:
            continue
        last = len(words) - 1
        for start in range(len(tokens) - last):
            if all(word_matches(tokens[start + k], w, prefix=prefix and k == last) for k, w in enumerate(words)):
                return True
    return False
