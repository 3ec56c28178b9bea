"""The `parley` command: one front door for talking, running, chatting and managing models.

With no command it opens the window."""

from __future__ import annotations

import argparse
import asyncio
import gc
import getpass
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from app.commands import models as models_cli
from app.settings import (
    Changes,
    Settings,
    load_settings,
    save_user_settings,
    user_config_path,
)
from engines.errors import ParleyError


def _overrides(args: argparse.Namespace) -> Changes:
    return {"models": {"stt": args.stt, "llm": args.llm, "tts": args.tts, "vad": args.vad},
            "stt": {"language": args.language}}


def _cmd_talk(args: argparse.Namespace, settings: Settings) -> int:
    from app.commands.talk import talk

    turns = _run(talk(settings, args.input, args.output, args.metrics_json))
    print(f"{len(turns)} turn(s) answered; replies written to {args.output}")
    return 0


def _cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    if not args.headless:
        from app.gui.app import run_gui

        return run_gui(settings, args.screenshot, args.max_turns, cloud=args.cloud,
                       kiosk=args.kiosk)
    if args.cloud:
        from app.commands.live_cloud import run_cloud

        _run(run_cloud(settings, args.input_device, args.output_device, args.max_turns,
                       args.metrics_json))
        return 0
    from app.commands.live import run_live

    _run(run_live(settings, args.input_device, args.output_device, args.max_turns,
                  args.metrics_json, keep_history=not args.no_history))
    return 0


def _cmd_chat(args: argparse.Namespace, settings: Settings) -> int:
    from app.commands.chat import chat

    _run(chat(settings, speak=args.speak, keep_history=not args.no_history))
    return 0


def _cmd_selftest(args: argparse.Namespace, settings: Settings) -> int:
    from app.commands.selftest import selftest

    return int(_run(selftest(settings)))


def _cmd_cloud(args: argparse.Namespace, settings: Settings) -> int:
    from app.cloud import apikey

    if args.action == "set-key":
        key = sys.stdin.readline() if not sys.stdin.isatty() else getpass.getpass(
            "OpenAI API key (input hidden): ")
        apikey.store_key(key)
        print("Key stored in your system keyring; `parley run --cloud` will use it.")
    elif apikey.forget_key():
        print("Key removed from your system keyring.")
    else:
        print("No key was stored in your system keyring.")
    return 0


def _cmd_kiosk(args: argparse.Namespace, settings: Settings) -> int:
    from app.control.pin import hash_pin

    if args.action == "clear-pin":
        save_user_settings({"ui": {"kiosk_pin": ""}})
        print("PIN removed: the settings are locked in kiosk mode until you set one.")
        return 0
    if sys.stdin.isatty():
        pin = getpass.getpass("New kiosk PIN, 4 to 8 digits (input hidden): ")
        if getpass.getpass("The same PIN again: ") != pin:
            print("parley: the two PINs differ; nothing was changed.", file=sys.stderr)
            return 2
    else:  # a script or a test: one line on stdin
        pin = sys.stdin.readline().strip()
    save_user_settings({"ui": {"kiosk_pin": hash_pin(pin)}})
    print(f"PIN set (only its salted hash is kept, in {user_config_path()}); in kiosk mode "
          "the settings now open with it.")
    return 0


def _cmd_config_path(args: argparse.Namespace, settings: Settings) -> int:
    print(user_config_path())
    return 0


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parley", description=__doc__)
    models = parser.add_argument_group("models (a catalog name, a path or a URL)")
    for kind in ("stt", "llm", "tts", "vad"):
        models.add_argument(f"--{kind}", metavar="MODEL", help=f"{kind.upper()} model")
    parser.add_argument("--language", help="spoken language code, or 'auto'")
    parser.set_defaults(handler=_cmd_run, headless=False, screenshot=None, max_turns=None,
                        cloud=False, kiosk=False, no_history=False)
    sub = parser.add_subparsers(dest="command")

    talk = sub.add_parser("talk", help="answer the utterances in a WAV file, into a WAV file")
    talk.add_argument("--input", type=Path, required=True, help="WAV with one or more utterances")
    talk.add_argument("--output", type=Path, required=True, help="WAV for the spoken replies")
    talk.add_argument("--metrics-json", type=Path, help="write per-turn timings here")
    talk.set_defaults(handler=_cmd_talk)

    run = sub.add_parser("run", help="the voice agent (the window; --headless for audio only)")
    run.add_argument("--headless", action="store_true", help="no window, just audio")
    run.add_argument("--screenshot", type=Path, help="save the window to this PNG and quit")
    run.add_argument("--input-device", help="microphone: index or part of its name")
    run.add_argument("--output-device", help="speaker: index or part of its name")
    run.add_argument("--max-turns", type=int, help="stop after this many answered turns")
    run.add_argument("--metrics-json", type=Path, help="write per-turn timings here")
    run.add_argument("--no-history", action="store_true",
                     help="with --headless: keep no record of the conversation")
    run.add_argument("--cloud", action="store_true",
                     help="talk to the OpenAI Realtime API instead of the local models "
                          "(the window starts in cloud mode)")
    run.add_argument("--kiosk", action="store_true",
                     help="full screen for a touch screen in a public place: one talk "
                          "button, big type, settings behind a PIN (`parley kiosk set-pin`)")
    run.set_defaults(handler=_cmd_run)

    kiosk = sub.add_parser("kiosk", help="the settings PIN of kiosk mode")
    kiosk.add_argument("action", choices=["set-pin", "clear-pin"],
                       help="set-pin asks for the PIN twice, hidden (or reads one line from "
                            "stdin); clear-pin locks the settings entirely")
    kiosk.set_defaults(handler=_cmd_kiosk)

    cloud = sub.add_parser("cloud", help="the OpenAI API key for cloud mode")
    cloud.add_argument("action", choices=["set-key", "forget-key"],
                       help="set-key reads the key from stdin (hidden when typed)")
    cloud.set_defaults(handler=_cmd_cloud)

    chat = sub.add_parser("chat", help="a typed conversation with the same agent")
    chat.add_argument("--speak", action="store_true", help="also speak the replies aloud")
    chat.add_argument("--no-history", action="store_true",
                      help="keep no record of the conversation (kept by default, as the "
                           "window keeps it)")
    chat.set_defaults(handler=_cmd_chat)

    selftest = sub.add_parser("selftest", help="load every default engine and try each once")
    selftest.set_defaults(handler=_cmd_selftest)

    config_path = sub.add_parser("config-path", help="print where your settings file lives")
    config_path.set_defaults(handler=_cmd_config_path)

    models_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace, Settings], int] = args.handler
    try:
        return handler(args, load_settings(_overrides(args)))
    except ParleyError as err:
        print(f"parley: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("parley: stopped.", file=sys.stderr)
        return 130
    finally:
        # What the interrupted coroutines still hold (a resampler of soxr, whose binding
        # reports every object alive at exit as a leak) goes now, not during shutdown.
        gc.collect()


if __name__ == "__main__":
    sys.exit(main())
