"""`make bench`: how well each installed LLM answers everyday voice requests, and how fast.

Each model runs the questions in questions.toml through the real `open_session` (worker,
engines, tools, clock note; the output is silent but the TTS still synthesizes every piece,
as in a spoken conversation), in fresh data and config folders, with the shipped settings
and a fixed seed. Every turn is graded automatically (the file says how), tool calls are
checked again here against the registry's own JSON schemas, and the engine worker's memory
is sampled throughout. Results: quality.json (every turn, with what the model said) and
quality.md (the tables) in tests/bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import hashlib
import json
import os
import re
import statistics
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import psutil
from jsonschema import Draft202012Validator

from app.conversation.events import AgentEvent, Announcement, ToolCalled, ToolFinished
from app.conversation.metrics import LLM_FIRST_TOKEN, TOKENS_PER_S
from app.conversation.outputs import SilentOutput
from app.conversation.session import Session, open_session
from app.settings import load_settings
from app.tools.clock import DAYS, MONTHS
from app.tools.reminders import clock_time, timer_seconds
from engines.errors import ModelError
from engines.models import load_catalog, resolve

QUESTIONS = Path(__file__).with_name("questions.toml")
RESULTS = Path(__file__).with_name("results")
SEED = 42
ANNOUNCE_SLACK_S = 2.0
"""A timer is on time when announced this soon after it is due, or after the turn that
was still answering then (announcements wait for the turn, by design)."""
ANNOUNCE_WAIT_S = 20.0
"""How long past its due time a timer's announcement is waited for before it counts as
missing."""
FRESH = ("each script is a fresh conversation: history reset to the system prompt, no "
         "call waiting for a yes, pending timers, alarms and notes deleted; one session "
         "(worker, models loaded once) per model")
ROOT = Path(__file__).resolve().parents[2]


# -- the questions ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Turn:
    """One question and its checks (questions.toml's header says what each means)."""

    say: str
    answer: tuple[str, ...] = ()
    language: str = ""
    clock: str = ""
    tool: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    tool_optional: bool = False
    allow: tuple[str, ...] = ()
    announce: bool = False
    confirms: str = ""
    new_conversation: bool = False


@dataclass(frozen=True)
class Script:
    id: str
    category: str
    turns: tuple[Turn, ...]


def load_scripts(path: Path = QUESTIONS) -> list[Script]:
    """A misspelt key fails here, not as a check that silently never runs."""
    known = {f.name for f in fields(Turn)}
    scripts = []
    for raw in tomllib.loads(path.read_text(encoding="utf-8"))["script"]:
        turns = []
        for item in raw["turns"]:
            if unknown := set(item) - known:
                raise SystemExit(f"{path}: {raw['id']}: unknown keys {sorted(unknown)}")
            values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                      for k, v in item.items()}
            turns.append(Turn(**values))
        scripts.append(Script(raw["id"], raw["category"], tuple(turns)))
    return scripts


# -- grading ---------------------------------------------------------------------------------
_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
          "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
          "seventeen", "eighteen", "nineteen"]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_NUMBER = ({w: n for n, w in enumerate(_UNITS)} | {w: 20 + 10 * n for n, w in enumerate(_TENS)}
           | {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9})
_WORD = "(?:" + "|".join(sorted(_NUMBER, key=len, reverse=True)) + r")\b"
_NUMBER_RUN = re.compile(rf"\b{_WORD}(?:[\s-]+(?:and[\s-]+)?{_WORD})*")
_STOPWORDS = {
    "en": {"the", "is", "are", "was", "were", "of", "to", "and", "it", "that", "this", "you",
           "your", "for", "with", "what", "which", "there", "be", "have", "has", "i", "my",
           "at", "by", "from", "not", "do", "does", "can", "will", "would", "an", "in", "they",
           "he", "she", "we", "or", "but", "how", "it's", "its"},
    "fr": {"le", "la", "les", "un", "une", "des", "du", "de", "est", "et", "en", "que", "qui",
           "dans", "pour", "pas", "ne", "il", "elle", "je", "vous", "nous", "sont", "avec",
           "sur", "au", "aux", "ce", "cette", "son", "sa", "ses", "mais", "ou", "très", "plus",
           "c'est", "y"},
    "es": {"el", "la", "los", "las", "un", "una", "unos", "unas", "de", "del", "es", "y", "en",
           "que", "por", "para", "con", "no", "su", "sus", "se", "lo", "al", "como", "más",
           "pero", "está", "son", "hay", "muy", "tiene", "usted", "tú"},
}
"""Common words of each language the questions use; a word in two lists counts for both."""
_FRENCH_ELISION = re.compile(r"^(?:l|d|qu|j|n|s|c|m|t)'")


def normalise(text: str) -> str:
    """Lower case, "10,063" → "10063", "sixty-three" → "63": so a regex names a number once."""
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"(?<=\d)[,\u00a0\u202f](?=\d{3}\b)", "", text)
    return _NUMBER_RUN.sub(lambda m: str(_number_value(re.findall(r"[a-z]+", m[0]))), text)


def _number_value(words: list[str]) -> int:
    total = current = 0
    for word in (w for w in words if w != "and"):
        value = _NUMBER[word]
        if value == 100:
            current = max(current, 1) * 100
        elif value >= 1000:
            total, current = total + max(current, 1) * value, 0
        else:
            current += value
    return total + current


def language_of(text: str) -> str:
    """The language whose common words occur most often ("" for a tie or under 2 hits)."""
    words = re.findall(r"[a-zà-ÿœ]+(?:'[a-zà-ÿ]+)?", text.lower().replace("\u2019", "'"))
    hits = {lang: sum(w in stop for w in words) for lang, stop in _STOPWORDS.items()}
    hits["fr"] += sum(bool(_FRENCH_ELISION.match(w)) for w in words)
    ranked = sorted(hits.items(), key=lambda kv: kv[1], reverse=True)
    return ranked[0][0] if ranked[0][1] >= 2 and ranked[0][1] > ranked[1][1] else ""


def _minutes(start: datetime.datetime, end: datetime.datetime) -> Iterator[datetime.datetime]:
    """Every clock minute from one before `start` to one after `end`."""
    at = start.replace(second=0, microsecond=0) - datetime.timedelta(minutes=1)
    while at <= end + datetime.timedelta(minutes=1):
        yield at
        at += datetime.timedelta(minutes=1)


def said_times(text: str) -> set[tuple[int, int, str]]:
    """(hour, minute, "a" | "p" | "") of every time of day in a normalised reply:
    18:25, 6.25 pm, 6 pm, 25 past 6, half past 6, quarter to 7, 6 o'clock."""
    found = {(int(h), int(m), (ap or "")[:1]) for h, m, ap in re.findall(
        r"\b(\d{1,2})[:.](\d{2})\b(?:\s*([ap])\.?\s?m\b)?", text)}
    found |= {(int(h), 0, ap) for h, ap in re.findall(
        r"(?<![:.\d])(\d{1,2})\s*([ap])\.?\s?m\b", text)}
    found |= {(int(h), 0, "") for h in re.findall(r"\b(\d{1,2}) o'?clock", text)}
    for amount, way, hour in re.findall(r"\b(half|quarter|\d{1,2}) (past|to) (\d{1,2})\b",
                                        text):
        minutes = {"half": 30, "quarter": 15}.get(amount) or int(amount)
        if way == "past":
            found.add((int(hour), minutes, ""))
        else:
            found.add(((int(hour) - 1) % 12 or 12, 60 - minutes, ""))
    return found


def _same_time(said: tuple[int, int, str], at: datetime.datetime) -> bool:
    hour, minute, ap = said
    if minute != at.minute:
        return False
    if ap:
        return hour % 12 + (12 if ap == "p" else 0) == at.hour
    return hour == at.hour or (hour <= 12 and hour % 12 == at.hour % 12)


def clock_problem(kind: str, text: str, start: datetime.datetime, end: datetime.datetime
                  ) -> str | None:
    """None when the reply names the right time/day/date while the turn ran."""
    moments = list(_minutes(start, end))
    days = {m.date() for m in moments}
    if kind == "time":
        ok = any(_same_time(t, m) for t in said_times(text) for m in moments)
    elif kind in ("weekday", "tomorrow"):
        ahead = datetime.timedelta(days=1 if kind == "tomorrow" else 0)
        ok = any(DAYS[(d + ahead).weekday()].lower() in text for d in days)
    elif kind == "date":
        ok = any((re.search(rf"\b{d.day}(?:st|nd|rd|th)?\b", text)
                  and MONTHS[d.month - 1].lower() in text) or d.isoformat() in text
                 or re.search(rf"\b0?{d.day}/0?{d.month}\b|\b0?{d.month}/0?{d.day}\b", text)
                 for d in days)
    elif kind == "month":
        ok = any(MONTHS[d.month - 1].lower() in text for d in days)
    elif kind == "year":
        ok = any(re.search(rf"\b{d.year}\b", text) for d in days)
    elif kind == "to_hour":
        ok = any(re.search(rf"\b{(60 - m.minute) % 60 or 60}\s*(?:more\s+)?minute", text)
                 for m in moments)
    else:
        raise ValueError(f"unknown clock check {kind!r}")
    return None if ok else f"wrong or no {kind} (asked {start:%a %d %b %H:%M})"


def _arguments(name: str, text: str) -> dict[str, Any]:
    """A valid call's arguments as the tool reads them: a timer's hours, minutes and seconds
    are one length in seconds, an alarm's "6:45 pm" is 18:45."""
    arguments: dict[str, Any] = json.loads(text or "{}")
    if name == "set_alarm" and isinstance(arguments.get("time"), str):
        with contextlib.suppress(ValueError):  # the tool refused it: graded as written
            arguments["time"] = "{:02d}:{:02d}".format(*clock_time(arguments["time"]))
    if name == "set_timer":
        parts = {k: arguments.pop(k) for k in ("hours", "minutes", "seconds") if k in arguments}
        arguments["seconds"] = timer_seconds(**parts)
    return arguments


def _args_wrong(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """The arguments that do not have the expected value (strings: regexes)."""
    wrong = []
    for key, want in expected.items():
        got = actual.get(key)
        if isinstance(want, str):
            ok = isinstance(got, str) and re.search(want, normalise(got)) is not None
        else:
            ok = (isinstance(got, int | float) and not isinstance(got, bool)
                  and float(got) == float(want))
        if not ok:
            wrong.append(f"{key}={got!r}")
    return wrong


# -- one model, every script -----------------------------------------------------------------
class Recorder:
    """Every event the agent publishes, with when it was published."""

    def __init__(self) -> None:
        self.events: list[tuple[float, AgentEvent]] = []

    def __call__(self, event: AgentEvent) -> None:
        self.events.append((time.monotonic(), event))


class PeakMemory:
    """The engine worker's largest resident set seen, sampled every 0.2 s (the pid may
    change: a dead worker is restarted)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.peak = 0

    async def run(self) -> None:
        while True:
            pid = self.session.engines.pid
            if pid is not None:
                with contextlib.suppress(psutil.Error):  # it just died: the next one counts
                    self.peak = max(self.peak, psutil.Process(pid).memory_info().rss)
            await asyncio.sleep(0.2)


async def _fresh(session: Session, clear_tools: bool) -> None:
    """A new conversation in the same session; tools.db cleared too unless kept on purpose."""
    agent = session.agent
    del agent.history[1:]
    if agent.tools is not None:
        agent.tools.pending = None
    if not clear_tools:
        return
    box = session.toolbox
    for timer in json.loads(await box.call("timers_left", "{}"))["timers"]:
        await box.call("cancel_timer", json.dumps({"which": timer["id"]}))
    while notes := json.loads(await box.call("recall", "{}"))["notes"]:
        for note in notes:
            await box.call("forget", json.dumps({"which": note["id"]}))


def _json(text: str) -> Any:
    """The parsed text; None when it is not JSON (a call cut short)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _check_call(event: ToolCalled, validators: dict[str, Draft202012Validator]
                ) -> dict[str, Any]:
    """The call as emitted, checked here again: does it parse, does it fit its schema."""
    arguments = _json(event.arguments)
    parsed = isinstance(arguments, dict)
    validator = validators.get(event.name)
    return {"name": event.name, "arguments": event.arguments, "waiting": event.waiting,
            "json": parsed,
            "valid": parsed and validator is not None and validator.is_valid(arguments)}


def _runs(events: list[tuple[float, AgentEvent]], name: str) -> int:
    """How many calls of `name` ran without an error."""
    return sum(isinstance(e, ToolFinished) and e.name == name
               and isinstance(result := _json(e.result), dict) and "error" not in result
               for _, e in events)


async def _ask(session: Session, recorder: Recorder, script: Script, turn: Turn,
               validators: dict[str, Draft202012Validator]) -> dict[str, Any]:
    """One question: say it, grade the reply, the calls and (for a timer) its announcement."""
    first = len(recorder.events)
    started, began = datetime.datetime.now(), time.monotonic()
    metrics = await session.agent.say(turn.say)
    ended, done = datetime.datetime.now(), time.monotonic()
    events = recorder.events[first:]
    llm = session.engines.stats.get("llm")
    reply = metrics.assistant_text if metrics is not None else ""
    text = normalise(reply)
    calls = [_check_call(e, validators) for _, e in events if isinstance(e, ToolCalled)]
    why = [f"reply lacks /{p}/" for p in turn.answer if not re.search(p, text)]
    if turn.language and (said := language_of(reply)) != turn.language:
        why.append(f"language {said or 'unclear'}, not {turn.language}")
    if turn.clock and (problem := clock_problem(turn.clock, text, started, ended)):
        why.append(problem)
    if turn.tool and not turn.tool_optional:
        named = [c for c in calls if c["name"] == turn.tool and c["valid"]]
        wrong = [_args_wrong(turn.args, _arguments(c["name"], c["arguments"])) for c in named]
        if not named:
            why.append(f"no valid {turn.tool} call")
        elif all(wrong):
            why.append(f"{turn.tool} with {', '.join(wrong[0])}")
        if (runs := _runs(events, turn.tool)) > 1:  # one request, one timer (or note)
            why.append(f"{turn.tool} ran {runs} times")
    if turn.confirms and not _runs(events, turn.confirms):
        why.append(f"{turn.confirms} did not run")
    if not reply.strip():
        why.append("said nothing")
    late = None
    if turn.announce:
        late, problem = await _announcement(recorder, events, done)
        if problem:
            why.append(problem)
    expected = turn.tool
    return {
        "script": script.id, "category": script.category, "say": turn.say, "reply": reply,
        "right": not why, "why": why, "calls": calls, "seconds": round(done - began, 2),
        "ttft_ms": metrics.metrics_ms.get(LLM_FIRST_TOKEN) if metrics else None,
        "tokens_per_s": metrics.metrics_ms.get(TOKENS_PER_S) if metrics else None,
        "engine_tokens_per_s": llm.last_call_ms.get(TOKENS_PER_S) if llm else None,
        "expects_tool": expected,
        "right_tool": bool(expected) and any(c["name"] == expected for c in calls),
        "right_args": bool(expected) and any(
            c["name"] == expected and c["valid"]
            and not _args_wrong(turn.args, _arguments(c["name"], c["arguments"])) for c in calls),
        "spurious": not expected and any(c["name"] not in turn.allow for c in calls),
        "announce_late_s": late,
    }


async def _announcement(recorder: Recorder, events: list[tuple[float, AgentEvent]],
                        turn_end: float) -> tuple[float | None, str | None]:
    """How late the timer set in this turn was announced, and what was wrong, if anything.
    Every call gets its result in order, so the n-th call's result is the n-th result."""
    called = [e for _, e in events if isinstance(e, ToolCalled) and e.name == "set_timer"]
    results = [(t, e) for t, e in events if isinstance(e, ToolFinished) and e.name == "set_timer"]
    set_at = [t + float(_arguments("set_timer", call.arguments)["seconds"]) for call, (t, result)
              in zip(called, results, strict=False) if "error" not in _json(result.result)]
    if not set_at:
        return None, "no timer was set, so none was announced"
    due = set_at[0]
    while time.monotonic() < due + ANNOUNCE_WAIT_S:
        said = [t for t, e in recorder.events if isinstance(e, Announcement) and t >= due - 1]
        if said:
            late = said[0] - due
            if said[0] > max(due, turn_end) + ANNOUNCE_SLACK_S:
                return late, f"announced {late:.1f} s after it was due"
            return late, None
        await asyncio.sleep(0.1)
    return None, f"not announced within {ANNOUNCE_WAIT_S:.0f} s of being due"


async def run_model(name: str, scripts: list[Script], seed: int, results: Results) -> None:
    """Every script through one session of `name`, in a data folder of its own; the results
    are saved after each script."""
    with tempfile.TemporaryDirectory(prefix="parley-quality-") as data:
        os.environ["PARLEY_DATA_DIR"] = data
        settings = load_settings({"models": {"llm": name}, "llm": {"seed": seed}})
        opened, code = time.monotonic(), code_state()
        session = await open_session(settings, SilentOutput())
        load_seconds = time.monotonic() - opened
        recorder, memory = Recorder(), PeakMemory(session)
        session.agent.subscribe(recorder)
        sampler = asyncio.create_task(memory.run())
        tools = session.toolbox.tools
        validators = {n: Draft202012Validator(t.parameters) for n, t in tools.items()}
        asked: list[dict[str, Any]] = []

        def save(complete: bool) -> None:
            results.save({
                "model": name, "complete": complete, "load_seconds": round(load_seconds, 1),
                "wall_seconds": round(time.monotonic() - opened, 1),
                "worker_peak_rss_mb": round(memory.peak / 2**20),
                "code": {"start": code, "end": code_state()},
                "settings": {"temperature": settings.llm.temperature, "seed": seed,
                             "max_tokens": settings.llm.max_tokens,
                             "system_prompt": settings.llm.system_prompt,
                             "tools": {n: t.description for n, t in tools.items()}},
                **summarise(asked), "turns": asked})

        try:
            for script in scripts:
                await _fresh(session, clear_tools=True)
                for turn in script.turns:
                    if turn.new_conversation:
                        await _fresh(session, clear_tools=False)
                    asked.append(await _ask(session, recorder, script, turn, validators))
                    mark = "ok  " if asked[-1]["right"] else "FAIL"
                    print(f"[{name}] {mark} {asked[-1]['seconds']:6.1f}s {script.id}: "
                          f"{turn.say!r} → {asked[-1]['reply'][:90]!r}", flush=True)
                save(complete=False)
        finally:
            sampler.cancel()
            await session.close()
        save(complete=True)


# -- the report ------------------------------------------------------------------------------
def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 1) if present else None


def summarise(asked: list[dict[str, Any]]) -> dict[str, Any]:
    categories: dict[str, list[int]] = {}
    for item in asked:
        counts = categories.setdefault(item["category"], [0, 0])
        counts[0] += item["right"]
        counts[1] += 1
    calls = [c for item in asked for c in item["calls"]]
    expecting = [item for item in asked if item["expects_tool"]]
    return {
        "right": sum(item["right"] for item in asked), "asked": len(asked),
        "categories": {k: {"right": r, "asked": n} for k, (r, n) in categories.items()},
        "category_seconds": {k: round(sum(i["seconds"] for i in asked if i["category"] == k))
                             for k in categories},
        "ttft_ms_p50": _median([item["ttft_ms"] for item in asked]),
        "tokens_per_s_p50": _median([item["tokens_per_s"] for item in asked]),
        "engine_tokens_per_s_p50": _median([item["engine_tokens_per_s"] for item in asked]),
        "tool_calls": {
            "emitted": len(calls), "json": sum(c["json"] for c in calls),
            "valid": sum(c["valid"] for c in calls), "expected": len(expecting),
            "right_tool": sum(item["right_tool"] for item in expecting),
            "right_args": sum(item["right_args"] for item in expecting),
            "not_expected": len(asked) - len(expecting),
            "spurious": sum(item["spurious"] for item in asked)},
        "announce_late_s": [round(item["announce_late_s"], 1) for item in asked
                            if item["announce_late_s"] is not None],
    }


def tables(models: list[dict[str, Any]]) -> str:
    categories = list(dict.fromkeys(k for m in models for k in m["categories"]))
    lines = ["| model | score | TTFT p50 ms | tokens/s p50 | engine tokens/s p50 | worker peak "
             "RSS MB | load s | run min |", "|---|---|---|---|---|---|---|---|"]
    for m in models:
        lines.append(f"| {_label(m)} | {m['right']}/{m['asked']} "
                     f"({100 * m['right'] / m['asked']:.0f}%) | {m['ttft_ms_p50']:.0f} | "
                     f"{m['tokens_per_s_p50']} | {m['engine_tokens_per_s_p50']} | "
                     f"{m['worker_peak_rss_mb']} | {m['load_seconds']} | "
                     f"{m['wall_seconds'] / 60:.1f} |")
    lines += ["", "| model | " + " | ".join(categories) + " |",
              "|---|" + "---|" * len(categories)]
    for m in models:
        cells = [f"{c['right']}/{c['asked']}" if (c := m["categories"].get(k)) else "—"
                 for k in categories]
        lines.append(f"| {_label(m)} | " + " | ".join(cells) + " |")
    lines += ["", "| model | calls emitted | parse as JSON | valid (schema) | right tool | "
              "right tool and arguments | spurious calls |", "|---|---|---|---|---|---|---|"]
    for m in models:
        t = m["tool_calls"]
        lines.append(f"| {_label(m)} | {t['emitted']} | {t['json']} | {t['valid']} | "
                     f"{t['right_tool']}/{t['expected']} | {t['right_args']}/{t['expected']} "
                     f"| {t['spurious']}/{t['not_expected']} |")
    return "\n".join(lines)


def _label(model: dict[str, Any]) -> str:
    return f"{model['model']}{'' if model['complete'] else ' (unfinished)'}"


class Results:
    """quality.json and quality.md, written again after every script, so a run that is
    stopped (others share this machine) keeps what it had measured."""

    def __init__(self, out: Path, report: dict[str, Any]) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.report = report

    def save(self, model: dict[str, Any]) -> None:
        models = self.report["models"]
        models[:] = [m for m in models if m["model"] != model["model"]] + [model]
        self.report["load_average_end"] = os.getloadavg()
        (self.out / "quality.json").write_text(
            json.dumps(self.report, indent=2, ensure_ascii=False) + "\n")
        (self.out / "quality.md").write_text(self.markdown())

    def markdown(self) -> str:
        report, models = self.report, self.report["models"]
        changed = [m["model"] for m in models if m["code"]["start"] != m["code"]["end"]]
        return (tables(models) + f"\n\n{report['questions']} questions "
                f"({report['expect_a_tool']} for a tool), seed {report['seed']}, shipped "
                f"settings otherwise (temperature {models[0]['settings']['temperature']}); "
                f"{FRESH}. TTFT and tokens/s are medians over all turns; tokens/s is the "
                "turn's (TurnMetrics: the LLM waits while the TTS speaks on 2 cores), engine "
                "tokens/s the worker's own figure for generation alone. "
                f"{report['cpus']} cores, load average {report['load_average_start'][0]:.1f} "
                f"at the start and {report['load_average_end'][0]:.1f} at the end. Commit "
                f"{report['commit']}"
                + (" with uncommitted changes in app/, engines/ or resources/."
                   if report["uncommitted"] else ".")
                + (f" The code changed during the run of {', '.join(changed)}."
                   if changed else "") + "\n")


def installed_llms() -> list[str]:
    names = []
    for entry in load_catalog().entries("llm"):
        try:
            resolve(entry.name, "llm")
        except ModelError:
            continue
        names.append(entry.name)
    return names


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout


def code_state() -> str:
    """A fingerprint of the code and settings a run used, uncommitted edits included: others
    edit the same working tree, so a run records whether they changed under it."""
    paths = ("app", "engines", "resources")
    digest = hashlib.sha256(_git("diff", "HEAD", "--", *paths).encode())
    for name in _git("ls-files", "--others", "--exclude-standard", *paths).split():
        digest.update(name.encode() + (ROOT / name).read_bytes())
    return digest.hexdigest()[:12]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", help="comma-separated catalog names (default: every "
                        "installed catalog LLM)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--only", help="comma-separated script ids or categories")
    args = parser.parse_args()
    names = args.models.split(",") if args.models else installed_llms()
    scripts = load_scripts()
    if args.only:
        chosen = set(args.only.split(","))
        scripts = [s for s in scripts if chosen & {s.id, s.category}]
    turns = [t for s in scripts for t in s.turns]
    print(f"{len(turns)} questions in {len(scripts)} conversations, "
          f"{sum(bool(t.tool) for t in turns)} expect a tool; models: {', '.join(names)}",
          flush=True)
    report: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": _git("rev-parse", "--short", "HEAD").strip(),
        "uncommitted": _git("status", "--porcelain", "app", "engines",
                            "resources").splitlines(),
        "cpus": os.cpu_count(), "load_average_start": os.getloadavg(), "seed": args.seed,
        "conversations": FRESH, "questions": len(turns),
        "expect_a_tool": sum(bool(t.tool) for t in turns), "models": [],
    }
    results = Results(args.out, report)
    with tempfile.TemporaryDirectory() as config:
        os.environ["PARLEY_CONFIG"] = str(Path(config) / "config.toml")  # none: defaults
        for name in names:
            asyncio.run(run_model(name, scripts, args.seed, results))
    print(results.markdown())


if __name__ == "__main__":
    main()
