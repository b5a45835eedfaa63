"""Reading a patient's text message: a keyword (STOP, START, HELP), an answer to the 24-hour check, or neither.

An answer is two things: post-needling soreness 0-10 and whether any warning sign from the aftercare notice is
present (1 or yes) or not (0 or no). Accepted forms: ``7 0``, ``7,0``, ``7; no``, ``7 yes``, and the labelled
``soreness 7 flag 0`` (labels in either order). Keywords are the carriers' usual ones, alone in the message
(``STOP``, ``STOPALL``, ``STOP ALL``, ``UNSUBSCRIBE``, ``CANCEL``, ``END``, ``QUIT``; ``START``, ``UNSTOP``;
``HELP``, ``INFO``), in any case, with trailing punctuation. "YES" is never START here: it answers the warning-sign
question. Everything else — one number, a number out of range, extra words, a keyword inside a sentence — is
:class:`NotUnderstood`: nothing is guessed.
"""

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

KeywordKind = Literal["stop", "start", "help"]
KEYWORDS: dict[str, KeywordKind] = {
    "stop": "stop",
    "stopall": "stop",
    "stop all": "stop",
    "unsubscribe": "stop",
    "cancel": "stop",
    "end": "stop",
    "quit": "stop",
    "start": "start",
    "unstop": "start",
    "help": "help",
    "info": "help",
}
YES = frozenset({"1", "yes", "y"})
NO = frozenset({"0", "no", "n"})
SORENESS_LABELS = frozenset({"soreness", "sore"})
FLAG_LABELS = frozenset({"flag", "flags", "redflag", "redflags", "warning", "warnings"})
MAX_LENGTH = 160  # an answer or a keyword fits in one text; longer messages are not read as either

_SEPARATORS = re.compile(r"[\s,;:]+")
_SCORE = re.compile(r"^[0-9]{1,2}$")


@dataclass(frozen=True)
class Keyword:
    kind: KeywordKind


@dataclass(frozen=True)
class ReplyAnswer:
    """Soreness 0-10, and whether a warning sign is present."""

    soreness: int
    warning_sign: bool


@dataclass(frozen=True)
class NotUnderstood:
    reason: str


ParsedReply = Keyword | ReplyAnswer | NotUnderstood


def parse_reply(text: str) -> ParsedReply:
    """What ``text`` says, read strictly (see the module docstring)."""
    words = _words(text)
    if not words:
        return NotUnderstood("empty message")
    if len(" ".join(words)) > MAX_LENGTH:
        return NotUnderstood("too long to be an answer or a keyword")
    keyword = KEYWORDS.get(" ".join(words))
    if keyword is not None:
        return Keyword(keyword)
    if len(words) == 2:
        return _pair(words[0], words[1])
    if len(words) == 4:
        return _labelled(words)
    return NotUnderstood("expected two answers, e.g. 7 0")


def _words(text: str) -> list[str]:
    """Lower-case words, compatibility forms folded (full-width digits), outer punctuation dropped."""
    folded = unicodedata.normalize("NFKC", text).casefold().strip()
    folded = folded.strip(".!?\"'()[]")
    return [word.strip(".!?\"'()[]") for word in _SEPARATORS.split(folded) if word.strip(".!?\"'()[]")]


def _pair(first: str, second: str) -> ParsedReply:
    if not _SCORE.match(first) or int(first) > 10:
        return NotUnderstood("soreness must be a whole number from 0 to 10")
    if second in YES:
        return ReplyAnswer(int(first), True)
    if second in NO:
        return ReplyAnswer(int(first), False)
    return NotUnderstood("warning signs must be 1 (yes) or 0 (no)")


def _labelled(words: list[str]) -> ParsedReply:
    pairs = {words[0]: words[1], words[2]: words[3]}
    soreness = next((pairs[label] for label in pairs if label in SORENESS_LABELS), None)
    flag = next((pairs[label] for label in pairs if label in FLAG_LABELS), None)
    if soreness is None or flag is None or len(pairs) != 2:
        return NotUnderstood("expected 'soreness <0-10> flag <0 or 1>'")
    return _pair(soreness, flag)
