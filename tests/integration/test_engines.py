"""The real engines on the real default models: what a user of each engine relies on.

Each model is loaded once per module; the machine running CI has two cores.
"""

from __future__ import annotations

import datetime
import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soxr

from app.conversation.context import turn_note, where
from app.settings import load_settings
from app.tools import default_tools
from app.tools.reminders import clock_time, timer_seconds
from engines.builtin import default_registry
from engines.errors import ModelError, ParleyError
from engines.llm_llama import LlamaLLM
from engines.model_ref import Kind, ModelRef
from engines.protocols import (
    Audio,
    ChatMessage,
    LLMEngine,
    STTEngine,
    Token,
    ToolCall,
    TTSEngine,
    VADEngine,
)
from engines.stt_whisper import WhisperSTT
from engines.tts_piper import PiperTTS
from engines.vad_silero import SileroVAD
from tests.speech import espeak

PARAGRAPH = (
    "The weather will be sunny tomorrow morning. "
    "Please remind me to call my sister after lunch. "
    "I would like to book a table for dinner this evening. "
    "The library closes early on Saturdays. "
    "My favorite fruit is a green apple."
)
SYSTEM = ChatMessage("system", "You are a friendly voice assistant. Answer in one sentence.")


def words(text: str) -> str:
    """Lower case, no punctuation: what a listener would compare."""
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def silero_ref(models: dict[Kind, ModelRef]) -> ModelRef:
    root = models["stt"].path.parent
    return ModelRef("silero-vad", "vad", "silero", root / "silero-vad" / "silero_vad.onnx")


@pytest.fixture(scope="module")
def stt(default_models: dict[Kind, ModelRef]) -> Iterator[WhisperSTT]:
    engine = WhisperSTT(default_models["stt"], {})
    engine.load()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def llm(default_models: dict[Kind, ModelRef]) -> Iterator[LlamaLLM]:
    engine = LlamaLLM(default_models["llm"], {"seed": 7})
    engine.load()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def tts(default_models: dict[Kind, ModelRef]) -> Iterator[PiperTTS]:
    engine = PiperTTS(default_models["tts"], {})
    engine.load()
    yield engine
    engine.close()


def test_the_registry_builds_every_default_engine(default_models: dict[Kind, ModelRef]) -> None:
    registry = default_registry()
    engines = {kind: registry.create(ref, {}) for kind, ref in default_models.items()}
    assert isinstance(engines["stt"], STTEngine)
    assert isinstance(engines["llm"], LLMEngine)
    assert isinstance(engines["tts"], TTSEngine)
    assert isinstance(engines["vad"], VADEngine)
    assert isinstance(registry.create(silero_ref(default_models), {}), VADEngine)


def test_a_spoken_paragraph_is_transcribed_accurately(stt: WhisperSTT) -> None:
    # An endpointed utterance keeps a little of the silence around the speech.
    pad = np.zeros(stt.sample_rate * 3 // 10, dtype=np.float32)
    audio = np.concatenate([pad, espeak(PARAGRAPH, rate=stt.sample_rate), pad])
    transcript = stt.transcribe(audio)
    assert jiwer.wer(words(PARAGRAPH), words(transcript.text)) < 0.10, transcript.text
    assert transcript.language == "en"
    assert transcript.audio_seconds == pytest.approx(len(audio) / 16000)
    assert stt.stats.calls >= 1 and stt.stats.last_call_ms["transcribe"] > 0


def test_silence_transcribes_to_nothing(stt: WhisperSTT) -> None:
    assert stt.transcribe(np.zeros(16000, dtype=np.float32)).text == ""


def test_the_llm_streams_a_reply_with_token_counts(llm: LlamaLLM) -> None:
    messages = [SYSTEM, ChatMessage("user", "What is the capital of France?")]
    tokens = list(llm.stream(messages, max_tokens=40, temperature=0.0))
    *pieces, last = tokens
    assert pieces and all(not t.done and t.text for t in pieces)
    assert last == Token("", done=True, prompt_tokens=last.prompt_tokens,
                         completion_tokens=last.completion_tokens, finish=last.finish)
    assert last.finish in ("stop", "length")
    assert last.prompt_tokens > 10 and 1 <= last.completion_tokens <= 40
    assert "".join(t.text for t in pieces).strip()
    timings = llm.stats.last_call_ms
    assert 0 < timings["first_token"] <= timings["total"]


def test_the_next_turn_reuses_the_conversation_already_in_the_cache(llm: LlamaLLM) -> None:
    first = [ChatMessage("system", "You are a terse assistant for a cooking show."),
             ChatMessage("user", "Name one vegetable.")]
    reply = "".join(t.text for t in llm.stream(first, max_tokens=16, temperature=0.0))
    first_prompt = int(llm.stats.last_call_ms["prompt_tokens"])

    second = [*first, ChatMessage("assistant", reply), ChatMessage("user", "And one fruit?")]
    *_, last = llm.stream(second, max_tokens=16, temperature=0.0)
    reused = llm.stats.last_call_ms["reused_prompt_tokens"]
    # The whole first prompt was already evaluated; only the new turn needed the model.
    assert first_prompt <= reused < last.prompt_tokens


def test_generation_stops_promptly_when_the_listener_stops(llm: LlamaLLM) -> None:
    messages = [SYSTEM, ChatMessage("user", "Tell me a very long story about a dragon.")]
    stream = llm.stream(messages, max_tokens=500, temperature=0.7)
    for _ in zip(range(3), stream, strict=False):
        pass
    start = time.perf_counter()
    stream.close()
    assert time.perf_counter() - start < 0.2
    # Generation stopped where the listener did (closing waits for no 500 tokens).
    assert llm.stats.last_call_ms["completion_tokens"] <= 4
    *_, last = llm.stream([SYSTEM, ChatMessage("user", "Hi!")], max_tokens=8,
                          temperature=0.0)
    assert last.done and last.completion_tokens >= 1


def test_old_turns_are_dropped_when_the_history_outgrows_the_context(
    default_models: dict[Kind, ModelRef],
) -> None:
    small = LlamaLLM(default_models["llm"], {"n_ctx": 256, "seed": 1})
    history: list[ChatMessage] = []
    for i in range(8):
        history += [ChatMessage("user", f"Fact number {i}: the shelf holds {i} red boxes and "
                                        "some books about gardening and birds."),
                    ChatMessage("assistant", f"Noted, fact {i} about the shelf is saved.")]
    question = ChatMessage("user", "How many red boxes were on the shelf in the last fact?")
    messages = [SYSTEM, *history, question]
    try:
        prompt, kept = small.fit_prompt(messages, max_tokens=48)
        assert len(prompt) + 48 <= 256
        assert kept[0] == SYSTEM and kept[-1] == question
        assert kept[1].role == "user" and len(kept) < len(messages)
        assert kept[1:] == messages[len(messages) - len(kept) + 1:]  # the newest turns stay

        *_, last = small.stream(messages, max_tokens=48, temperature=0.0)
        assert last.prompt_tokens == len(prompt)
        assert last.prompt_tokens + last.completion_tokens <= 256
        assert small.stats.last_call_ms["dropped_messages"] == len(messages) - len(kept)

        with pytest.raises(ParleyError, match="too long"):
            small.fit_prompt([SYSTEM, ChatMessage("user", "word " * 400)], max_tokens=48)
    finally:
        small.close()


def test_a_conversation_that_outgrows_the_context_reads_only_its_newest_turn(
    default_models: dict[Kind, ModelRef],
) -> None:
    """The turns dropped to make room are cut out of the cache as well, so a long
    conversation is not read again from its start every turn (over a minute on two cores),
    and the model still follows it."""
    small = LlamaLLM(default_models["llm"], {"n_ctx": 384, "seed": 1})
    messages = [SYSTEM]
    left: list[float] = []
    try:
        for i in range(1, 16):
            messages += [ChatMessage("system", f"(The time is 10:{i:02}.)"),  # a turn's note
                         ChatMessage("user", f"Fact number {i}: the shelf holds {i} red "
                                             "boxes and some books about gardening.")]
            list(small.stream(messages, max_tokens=4, temperature=0.0))
            stats = small.stats.last_call_ms
            if stats["dropped_messages"]:
                assert stats["dropped_messages"] % 3 == 0  # whole turns, notes too
                left.append(stats["prompt_tokens"] - stats["reused_prompt_tokens"])
            messages.append(ChatMessage("assistant", f"Noted: fact {i} is saved."))
        messages.append(ChatMessage("user", "How many red boxes does the shelf hold in the "
                                            "last fact?"))
        answer = "".join(t.text for t in small.stream(messages, max_tokens=24,
                                                      temperature=0.0))
    finally:
        small.close()
    assert len(left) >= 3, left  # the conversation outgrew the window turn after turn
    # read each time: the last reply, the note and the new fact (~45 tokens), not ~300
    assert max(left) <= 60, left
    assert "15" in answer or "fifteen" in answer.lower(), answer


def test_spoken_replies_come_sentence_by_sentence_and_say_the_words(
    tts: PiperTTS, stt: WhisperSTT
) -> None:
    text = "The train to Boston leaves at noon. Please bring your umbrella!"
    chunks = list(tts.synthesize(text))
    assert [c.text for c in chunks] == ["The train to Boston leaves at noon.",
                                        "Please bring your umbrella!"]
    assert all(c.sample_rate == tts.sample_rate == 22050 for c in chunks)
    assert all(c.samples.dtype == np.float32 and np.abs(c.samples).max() > 0.1 for c in chunks)
    timings = tts.stats.last_call_ms
    assert 0 < timings["first_audio"] < timings["total"]

    audio = soxr.resample(np.concatenate([c.samples for c in chunks]), tts.sample_rate,
                          stt.sample_rate).astype(np.float32)
    heard = words(stt.transcribe(audio).text).split()
    assert set(words(text).split()) <= set(heard), heard


def test_a_slower_speaking_rate_gives_longer_audio(
    tts: PiperTTS, default_models: dict[Kind, ModelRef]
) -> None:
    slow = PiperTTS(default_models["tts"], {"length_scale": 1.5})
    try:
        # Piper varies durations run to run: judge over several sentences, not one
        text = ("Good morning, how can I help? The weather is lovely today. "
                "Let me read the news for you. Have a wonderful afternoon.")
        normal = sum(len(c.samples) for c in tts.synthesize(text))
        slower = sum(len(c.samples) for c in slow.synthesize(text))
        assert slower > 1.25 * normal
    finally:
        slow.close()

def test_without_random_variation_the_same_text_sounds_the_same_every_time(
    tts: PiperTTS, default_models: dict[Kind, ModelRef]
) -> None:
    """What the echo bench relies on to hear the same replies in every run."""
    text = "A spider has eight legs. Insects, on the other hand, have six."
    steady = PiperTTS(default_models["tts"], {"noise_scale": 0, "noise_w_scale": 0})
    try:
        first, second = ([c.samples.copy() for c in steady.synthesize(text)] for _ in range(2))
        assert len(first) == len(second) == 2
        assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
        # the voice's own variation, which the default keeps, changes it
        varied = [c.samples for c in tts.synthesize(text)]
        assert not all(np.array_equal(a, b) for a, b in zip(first, varied, strict=True))
    finally:
        steady.close()



def speech_flags(vad: VADEngine, audio: Audio) -> list[bool]:
    n = vad.frame_samples
    return [vad.is_speech(audio[i:i + n]) for i in range(0, len(audio) - n + 1, n)]


@pytest.mark.parametrize("provider", ["webrtcvad", "silero"])
def test_the_vad_hears_speech_and_not_silence(
    provider: str, default_models: dict[Kind, ModelRef]
) -> None:
    ref = default_models["vad"] if provider == "webrtcvad" else silero_ref(default_models)
    vad = default_registry().create(ref, {})
    assert isinstance(vad, VADEngine) and vad.sample_rate == 16000
    lead = np.zeros(8000, dtype=np.float32)
    speech = espeak("Hello, could you turn on the kitchen lights please?", rate=16000)
    flags = speech_flags(vad, np.concatenate([lead, speech, lead]))
    seconds_per_frame = vad.frame_samples / 16000
    onset = flags.index(True) * seconds_per_frame
    assert 0.4 <= onset <= 0.7  # the speech starts at 0.5 s
    assert sum(flags) * seconds_per_frame > 0.6 * len(speech) / 16000
    if isinstance(vad, SileroVAD):
        vad.reset()
    assert not any(speech_flags(vad, np.zeros(32000, dtype=np.float32)))
    vad.close()


def test_a_truncated_gguf_gives_a_clear_model_error(
    default_models: dict[Kind, ModelRef], tmp_path: Path
) -> None:
    real = default_models["llm"]
    broken = tmp_path / real.path.name
    with real.path.open("rb") as file:
        broken.write_bytes(file.read(1 << 20))
    engine = LlamaLLM(ModelRef(real.name, "llm", "gguf", broken), {})
    with pytest.raises(ModelError) as caught:
        engine.load()
    assert "corrupt or truncated" in caught.value.message
    assert f"parley models pull {real.name}" in caught.value.hint

    broken.write_text("<html>Not found</html>")
    with pytest.raises(ModelError, match="not a GGUF file"):
        engine.load()


def test_whisper_in_a_short_window_hears_each_question_once_and_says_how_sure_it_is(
        default_models: dict[Kind, ModelRef], stt: WhisperSTT) -> None:
    """Padded to 5 s instead of 30, Whisper reads a short question in a fraction of the
    time, but left alone it said the words again and again ("Why is this sky blue? Why is
    this sky blue? …") and the model answered that."""
    short = WhisperSTT(default_models["stt"], {"window_s": 5})
    quiet = np.zeros(4800, np.float32)
    try:
        for text, voice, speed in [("What is the tallest animal in the world?",
                                    "en-gb-scotland", 160),
                                   ("Why is the sky blue?", "en-gb-scotland", 150),
                                   ("Thanks, that is all for now.", "en-us+f3", 170)]:
            audio = np.concatenate([quiet, espeak(text, voice=voice, speed=speed), quiet])
            heard, whole = short.transcribe(audio), stt.transcribe(audio)
            words = heard.text.lower().split()
            assert len(words) <= len(text.split()) + 1, (text, heard.text)
            assert heard.logprob is not None and whole.logprob is not None
            assert -3 < heard.logprob < 0 and -3 < whole.logprob < 0
    finally:
        short.close()


def test_a_missing_or_damaged_whisper_folder_gives_a_clear_model_error(
    default_models: dict[Kind, ModelRef], tmp_path: Path
) -> None:
    real = default_models["stt"]
    missing = WhisperSTT(ModelRef(real.name, "stt", "ct2-whisper", tmp_path / "nowhere"), {})
    with pytest.raises(ModelError, match="missing") as caught:
        missing.transcribe(np.zeros(1600, dtype=np.float32))
    assert "parley models pull whisper-base" in caught.value.hint

    damaged = tmp_path / "whisper-base"
    damaged.mkdir()
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(real.path / name, damaged / name)
    with pytest.raises(ModelError, match=r"missing model\.bin"):
        WhisperSTT(ModelRef(real.name, "stt", "ct2-whisper", damaged), {}).load()
    with (real.path / "model.bin").open("rb") as file:
        (damaged / "model.bin").write_bytes(file.read(1 << 20))
    with pytest.raises(ModelError, match="corrupt or truncated"):
        WhisperSTT(ModelRef(real.name, "stt", "ct2-whisper", damaged), {}).load()


def test_a_broken_piper_voice_gives_a_clear_model_error(
    default_models: dict[Kind, ModelRef], tmp_path: Path
) -> None:
    real = default_models["tts"]
    voice = tmp_path / real.path.name
    with real.path.open("rb") as file:
        voice.write_bytes(file.read(1 << 20))
    ref = ModelRef(real.name, "tts", "piper", voice)
    with pytest.raises(ModelError, match="no config file"):
        PiperTTS(ref, {})

    shutil.copy(real.path.with_name(real.path.name + ".json"), tmp_path)
    engine = PiperTTS(ref, {})
    assert engine.sample_rate == 22050  # known before the voice is loaded
    with pytest.raises(ModelError, match="corrupt or truncated"):
        engine.load()


def test_an_unknown_piper_speaker_is_refused_before_loading(
    default_models: dict[Kind, ModelRef],
) -> None:
    with pytest.raises(ParleyError, match="no speaker 'alice'"):
        PiperTTS(default_models["tts"], {"speaker": "alice"})
    with pytest.raises(ParleyError, match="no speaker 3"):
        PiperTTS(default_models["tts"], {"speaker": 3})


def test_a_reply_cut_by_the_token_limit_says_so(llm: LlamaLLM) -> None:
    messages = [SYSTEM, ChatMessage("user", "Tell me a very long story about a dragon.")]
    *_, last = llm.stream(messages, max_tokens=3, temperature=0.0)
    assert last.finish == "length" and last.completion_tokens == 3


def test_asked_for_a_timer_the_model_emits_a_call_that_validates(llm: LlamaLLM,
                                                                 tmp_path: Path) -> None:
    tools = default_tools(lambda _text: None, tmp_path)
    messages = [SYSTEM, ChatMessage("user", "Set a timer for five seconds.")]
    tokens = list(llm.stream(messages, max_tokens=40, temperature=0.0, tools=tools.specs()))
    calls = [t.tool_call for t in tokens if t.tool_call is not None]
    assert tokens[-1].finish == "tool" and len(calls) == 1
    assert tools.validate(calls[0].name, calls[0].arguments) is None
    assert calls[0].name == "set_timer"
    length = {k: v for k, v in json.loads(calls[0].arguments).items() if k != "label"}
    assert timer_seconds(**length) == 5


def test_a_restarted_llm_reads_only_what_its_saved_prompt_does_not_hold(
        default_models: dict[Kind, ModelRef], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_CACHE_DIR", str(tmp_path))
    system = ChatMessage("system", "You are a terse assistant for a cooking show. "
                                   "You know every vegetable, fruit and spice by name.")
    first = LlamaLLM(default_models["llm"], {"seed": 7})
    list(first.stream([system, ChatMessage("user", "Name one vegetable.")], max_tokens=4,
                      temperature=0.0))
    first.close()
    (saved,) = (tmp_path / "prompts").glob("*.kv")

    def restarted() -> float:
        again = LlamaLLM(default_models["llm"], {"seed": 7})
        *_, last = again.stream([system, ChatMessage("user", "And one fruit?")], max_tokens=4,
                                temperature=0.0)
        again.close()
        assert last.completion_tokens >= 1
        return again.stats.last_call_ms["reused_prompt_tokens"]

    # The system prompt (over 20 tokens) came from the file, not from the model.
    assert restarted() > 20
    # A damaged file is dropped and the reply still comes, from the model alone.
    saved.write_bytes(saved.read_bytes()[:1000])
    assert restarted() == 0
    assert saved.stat().st_size > 1000  # saved again, whole


def shipped_prompt(*turns: tuple[str, str | ChatMessage | list[ChatMessage]]
                   ) -> list[ChatMessage]:
    """A conversation as the Agent gives it to the model: the shipped system prompt, and
    before each user message the note with the time and what the tools hold."""
    at = datetime.datetime(2026, 12, 6, 22, 30)
    messages = [ChatMessage("system", f"{load_settings().llm.system_prompt} {where(at)}")]
    for known, said in turns:
        if isinstance(said, str):
            messages += [ChatMessage("system", f"{turn_note(at)} {known}"),
                         ChatMessage("user", said)]
        else:
            messages += said if isinstance(said, list) else [said]
    return messages


NOTHING = "No timers or alarms are set. No notes are saved."
PASTA = "Pending: 10 minute timer 'pasta' (9 minutes and 50 seconds left, rings at 22:40). " \
        "No notes are saved."


def test_late_in_a_conversation_a_request_for_a_tool_still_calls_it(llm: LlamaLLM,
                                                                    tmp_path: Path) -> None:
    """After two turns about the timer answered in words, the model would say "I've
    cancelled it" and do nothing; read on its own, the request calls the tool."""
    tools = default_tools(lambda _text: None, tmp_path)
    messages = shipped_prompt(
        (NOTHING, "Set a timer for 10 minutes for the pasta."),
        ("", [ChatMessage("assistant", "", (ToolCall("set_timer", '{"minutes": 10, "label": '
                                                                  '"pasta"}'),)),
              ChatMessage("tool", '{"id": 1, "set": "10 minute timer \'pasta\'", '
                                  '"rings": "at 22:40"}'),
              ChatMessage("assistant", "I've set a 10-minute timer for the pasta. It rings "
                                       "at 22:40.")]),
        (PASTA, "What timers do I have?"),
        ("", ChatMessage("assistant", "You have a 10-minute timer for the pasta, with 9 "
                                      "minutes and 50 seconds left.")),
        (PASTA, "Cancel the pasta timer."))
    tokens = list(llm.stream(messages, max_tokens=40, temperature=0.0, tools=tools.specs()))
    assert "second_look" in llm.stats.last_call_ms
    assert tokens[-1].finish == "tool"
    assert [t.tool_call.name for t in tokens if t.tool_call] == ["cancel_timer"]


def test_a_follow_up_that_needs_the_conversation_is_answered_in_words(llm: LlamaLLM,
                                                                      tmp_path: Path) -> None:
    """On its own "When was he born?" would call a tool (a calculation); the conversation
    rules a call out, so it is not read on its own, and the answer uses what came before."""
    tools = default_tools(lambda _text: None, tmp_path)
    messages = shipped_prompt(
        (NOTHING, "Who wrote Hamlet?"),
        ("", ChatMessage("assistant", "William Shakespeare wrote Hamlet.")),
        (NOTHING, "When was he born?"))
    tokens = list(llm.stream(messages, max_tokens=40, temperature=0.0, tools=tools.specs()))
    assert "second_look" not in llm.stats.last_call_ms
    assert tokens[-1].finish == "stop" and not any(t.tool_call for t in tokens)
    assert "1564" in "".join(t.text for t in tokens)


@pytest.mark.parametrize(("said", "rings"), [
    ("Set an alarm for 6:45 in the evening.", (18, 45)),
    ("Wake me up at half past six tomorrow morning.", (6, 30)),
    ("Wake me up at 6 tomorrow.", (6, 0)),
])
def test_an_alarm_asked_for_in_words_rings_at_the_time_the_user_meant(
        llm: LlamaLLM, tmp_path: Path, said: str, rings: tuple[int, int]) -> None:
    """At the shipped temperature the reply is sampled, but the call's arguments are the
    model's best reading: sampled, it set 18:30 for half past six in the morning."""
    tools = default_tools(lambda _text: None, tmp_path)
    temperature = load_settings().llm.temperature
    tokens = list(llm.stream(shipped_prompt((NOTHING, said)), max_tokens=40,
                             temperature=temperature, tools=tools.specs()))
    calls = [t.tool_call for t in tokens if t.tool_call]
    assert [c.name for c in calls] == ["set_alarm"], calls
    assert clock_time(json.loads(calls[0].arguments)["time"]) == rings, calls


@pytest.mark.parametrize(("said", "expression", "result"), [
    ("What's 7 times 8?", "7*8", "56"),
    ("What is 987 minus 659?", "987-659", "328"),
])
def test_after_a_tools_result_the_answer_is_words_that_use_it(
        llm: LlamaLLM, tmp_path: Path, said: str, expression: str, result: str) -> None:
    """The last round may not call: the tools stay in the prompt, the reply opens with the
    likeliest word (sampled, it opened with "Good job!"), never the end of the turn or the
    call again as text."""
    tools = default_tools(lambda _text: None, tmp_path)
    messages = shipped_prompt(
        (NOTHING, said),
        ("", [ChatMessage("assistant", "", (ToolCall("calculate", json.dumps(
                  {"expression": expression})),)),
              ChatMessage("tool", json.dumps({"result": int(result), "spoken": result}))]))
    temperature = load_settings().llm.temperature
    tokens = list(llm.stream(messages, max_tokens=40, temperature=temperature,
                             tools=tools.specs(), may_call=False))
    text = "".join(t.text for t in tokens)
    assert tokens[-1].finish == "stop" and not any(t.tool_call for t in tokens)
    assert result in text and "{" not in text, text
