"""The names of a turn's metrics (`TurnMetrics.metrics_ms`) and the stages they add up to.

The agents write these keys and the Performance panel, the Markdown export and the bench
read them, so they live in one place and cannot drift apart. Each value is the key itself as
it appears in `--metrics-json`: a contract, so never change one. Times are milliseconds unless
the name ends in `_seconds` (or is a rate).
"""

from __future__ import annotations

from collections.abc import Mapping

END_OF_SPEECH_TO_FIRST_AUDIO = "end_of_speech_to_first_audio"
"""The headline: from the user's last voiced sample (for a typed turn, Enter) to the first
reply audio handed to the output. Local and cloud."""
END_OF_TURN_WAIT = "end_of_turn_wait"
"""From the user's last voiced sample to the turn judged finished: the silence the endpointer
waited for. Part of what the user feels, and no engine's doing."""
STT = "stt"
"""From the utterance handed to the Agent to its transcript back: the wait for it (shorter
when its transcription began in the pause before the turn ended, `early_stt_ms`)."""
AUDIO_SECONDS = "audio_seconds"
"""Seconds of the user's speech that was transcribed."""
LLM_FIRST_TOKEN = "llm_first_token"
"""From the request sent to the LLM (the transcript in the Agent) to its first token back."""
LLM_FIRST_PIECE = "llm_first_piece"
"""From the same request to the first speakable piece cut from the token stream."""
TTS_FIRST_AUDIO = "tts_first_audio"
"""From the first piece sent to the TTS to its first audio back."""
TTS_MS = "tts_ms"
"""The whole reply's synthesis: for each piece, from it being sent to its last audio, summed."""
TTS_AUDIO_SECONDS = "tts_audio_seconds"
"""Seconds of speech the TTS made for the reply."""
TOKENS_PER_S = "tokens_per_s"
"""Reply tokens per second, from the first token to the last."""
ENGINE_REPORTED = ("npu_prefill_ms", "npu_prefill_tokens", "npu_generate_ms",
                   "npu_generate_tokens", "npu_memory_mb")
"""What an engine reports of its own work, for the turn's last model call: the RKLLM
runtime's prefill and generate times and token counts, and its peak memory (MB)."""
END_OF_SPEECH_TO_FIRST_SOUND = "end_of_speech_to_first_sound"
"""Cloud: from the user's last voiced sample to when the first reply audio is heard (handed to
the output, plus the audio queued ahead of it and the device's latency)."""
END_OF_SPEECH_TO_SPEECH_STOPPED = "end_of_speech_to_speech_stopped"
"""Cloud: from the user's last voiced sample to the server saying the speech stopped: its
end-of-turn wait."""
SPEECH_STOPPED_TO_FIRST_AUDIO = "speech_stopped_to_first_audio"
"""Cloud: from the server saying the speech stopped to the first reply audio handed to the
output."""

END_OF_TURN, TRANSCRIBE, FIRST_TOKEN, FIRST_PHRASE, FIRST_AUDIO, OTHER = (
    "End of turn", "Transcribe", "First token", "First phrase", "First audio", "Other")
STAGES = (END_OF_TURN, TRANSCRIBE, FIRST_TOKEN, FIRST_PHRASE, FIRST_AUDIO, OTHER)
"""The consecutive stages of end of speech → first audio, in time order, as the user reads
them."""


def stage_times(metrics_ms: Mapping[str, float]) -> dict[str, float]:
    """Split end of speech → first audio into consecutive stages, in `STAGES` order, so they
    can be stacked end to end. Stages the turn did not have are left out (a typed turn has no
    End of turn or Transcribe; a cloud turn has End of turn, the server's wait, and Other);
    Other is what no stage accounts for."""
    stages: dict[str, float] = {}
    waited = metrics_ms.get(END_OF_TURN_WAIT, metrics_ms.get(END_OF_SPEECH_TO_SPEECH_STOPPED))
    if waited is not None:
        stages[END_OF_TURN] = waited
    if STT in metrics_ms:
        stages[TRANSCRIBE] = metrics_ms[STT]
    if LLM_FIRST_TOKEN in metrics_ms:
        stages[FIRST_TOKEN] = metrics_ms[LLM_FIRST_TOKEN]
        if LLM_FIRST_PIECE in metrics_ms:
            stages[FIRST_PHRASE] = max(
                0.0, metrics_ms[LLM_FIRST_PIECE] - metrics_ms[LLM_FIRST_TOKEN])
    if TTS_FIRST_AUDIO in metrics_ms:
        stages[FIRST_AUDIO] = metrics_ms[TTS_FIRST_AUDIO]
    total = metrics_ms.get(END_OF_SPEECH_TO_FIRST_AUDIO)
    if total is not None:
        stages[OTHER] = max(0.0, total - sum(stages.values()))
    return stages


def turn_times(asked: float, ended_at: float, marks: dict[str, float],
                 completion_tokens: int) -> dict[str, float]:
    """Milliseconds for each stage that happened; missing marks mean the stage never ran.
    Also the LLM's tokens per second, what the TTS spent for how much speech (the
    speaker keeps those two totals in `marks` under their metric names) and what the
    engine reported of itself (`ENGINE_REPORTED`)."""
    out: dict[str, float] = {k: v for k, v in marks.items()
                             if k in (TTS_MS, TTS_AUDIO_SECONDS, *ENGINE_REPORTED)}
    if completion_tokens > 1 and marks.get("last_token", 0) > marks.get("first_token", 0):
        out[TOKENS_PER_S] = (completion_tokens - 1) / (marks["last_token"]
                                                       - marks["first_token"])
    if "first_token" in marks:
        out[LLM_FIRST_TOKEN] = (marks["first_token"] - asked) * 1000
    if "first_audio" in marks and "first_piece_sent" in marks:
        out[TTS_FIRST_AUDIO] = (marks["first_audio"] - marks["first_piece_sent"]) * 1000
        out[END_OF_SPEECH_TO_FIRST_AUDIO] = (marks["first_audio"] - ended_at) * 1000
    if "first_piece" in marks and "first_token" in marks:
        out[LLM_FIRST_PIECE] = (marks["first_piece"] - asked) * 1000
    return out
