"""The reply is cut into pieces the voice can start on before the LLM has finished."""

from __future__ import annotations

from app.conversation.sentences import SentenceSplitter


def stream(text: str, step: int = 3) -> list[str]:
    splitter = SentenceSplitter(first_min_chars=10, first_max_words=6)
    pieces: list[str] = []
    for i in range(0, len(text), step):
        pieces += splitter.push(text[i:i + step])
    return pieces + splitter.flush()


def test_a_reply_is_spoken_sentence_by_sentence() -> None:
    assert stream("Hello there! How are you today? I am fine.") == [
        "Hello there!", "How are you today?", "I am fine."]


def test_the_first_piece_may_end_at_a_comma_once_it_is_long_enough() -> None:
    assert stream("Well, the capital of France, as you know, is Paris. It is big.") == [
        "Well, the capital of France,", "as you know, is Paris.", "It is big."]


def test_a_long_first_sentence_is_started_after_a_few_words() -> None:
    assert stream("The sky is blue because of a process called Rayleigh scattering. Yes.") == [
        "The sky is blue because of", "a process called Rayleigh scattering.", "Yes."]


def test_abbreviations_and_decimals_do_not_end_a_sentence() -> None:
    assert stream("Dr. Smith paid 3.50 dollars. Then he left.") == [
        "Dr. Smith paid 3.50 dollars.", "Then he left."]


def test_a_piece_is_only_emitted_once_its_end_is_certain() -> None:
    splitter = SentenceSplitter()
    assert splitter.push("It costs 3.") == []  # could still be 3.50
    assert splitter.push("5 euros. Bye") == ["It costs 3.5 euros."]
    assert splitter.flush() == ["Bye"]


def test_punctuation_alone_is_never_spoken() -> None:
    assert stream("... !") == []
