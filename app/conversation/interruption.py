"""What counts as the user really talking over a reply: words, not a noise or the reply's echo.

The barge-in endpointer (`audio.bargein`) pauses a reply on sound; the Agent then asks
these questions of the transcript: did the user say anything (`has_words`), and is it not
a run of the reply's own words leaking past the echo canceller (`echoes`)?
"""

from __future__ import annotations

import math
import re
from difflib import SequenceMatcher

_ANNOTATIONS = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*")
"""What Whisper writes for non-speech: [cough], (laughs), *sigh*."""


_STOCK = {("thank", "you"), ("thank", "you", "very", "much"), ("thanks", "for", "watching"),
          ("you",)}
"""What Whisper famously writes for silence or noise it cannot place (it was trained on
subtitles). A user who says only this over a reply is not taken as interrupting."""


def has_words(text: str) -> bool:
    """Whether a transcript holds anything said, rather than silence, a noise label or
    one of Whisper's stock phrases for noise."""
    words = _words(text)
    return bool(words) and tuple(words) not in _STOCK


def from_the_user(heard: str, reply: str) -> bool:
    """Whether a transcript of speech over a reply is the user saying something: words
    (`has_words`) that are not the reply's own voice leaking through (`echoes`)."""
    return has_words(heard) and not echoes(heard, reply)


def echoes(heard: str, reply: str) -> bool:
    """Whether what was heard is mostly a run of the reply's own words, i.e. the agent's
    voice leaking past the echo canceller rather than the user. A user's words seldom
    repeat the reply in order, and never most of them."""
    said, spoken = _words(heard), _words(reply)
    if not said:
        return False
    run = SequenceMatcher(None, said, spoken, autojunk=False).find_longest_match().size
    return run >= math.ceil(0.6 * len(said))


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", _ANNOTATIONS.sub("", text).lower())
