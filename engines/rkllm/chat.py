"""Chat templates for the runtime, and a conversation put into the one prompt it reads.

The runtime wraps every prompt as prefix + prompt + postfix and keeps what it read and wrote
in its KV cache (`keep_history`), so a new turn sends only the user's new words. When the
cache no longer matches the conversation (a new one, a reply cut short, old turns dropped),
the turns are written out in the model's own template inside one prompt, which the runtime's
prefix and postfix then close, so the model reads them as it would have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engines.errors import ParleyError
from engines.protocols import ChatMessage


@dataclass(frozen=True)
class Template:
    system: str
    """The system prompt's block; `{system}` is replaced by its text."""
    prefix: str
    """Opens a user turn."""
    postfix: str
    """Closes a user turn and opens the assistant's."""
    end: str
    """Closes the assistant's turn."""


TEMPLATES: dict[str, Template] = {
    "chatml": Template("<|im_start|>system\n{system}<|im_end|>\n", "<|im_start|>user\n",
                       "<|im_end|>\n<|im_start|>assistant\n", "<|im_end|>\n"),
    "llama3": Template("<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>",
                       "<|start_header_id|>user<|end_header_id|>\n\n",
                       "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
                       "<|eot_id|>"),
    "gemma": Template("<start_of_turn>user\n{system}<end_of_turn>\n", "<start_of_turn>user\n",
                      "<end_of_turn>\n<start_of_turn>model\n", "<end_of_turn>\n"),
    "phi3": Template("<|system|>\n{system}<|end|>\n", "<|user|>\n", "<|end|>\n<|assistant|>\n",
                     "<|end|>\n"),
    "deepseek": Template("{system}", "<\uff5cUser\uff5c>", "<\uff5cAssistant\uff5c>",
                         "<\uff5cend\u2581of\u2581sentence\uff5c>"),  # full-width bars
}
_FAMILIES = (("deepseek", "deepseek"), ("llama-3", "llama3"), ("llama3", "llama3"),
             ("gemma", "gemma"), ("phi-3", "phi3"), ("phi3", "phi3"), ("qwen", "chatml"),
             ("smollm", "chatml"), ("minicpm", "chatml"), ("internlm", "chatml"))
"""Name fragments of a model file, the family they mean (first match wins: DeepSeek's
distilled Qwen models use DeepSeek's template)."""


def template_for(choice: str, model_name: str) -> Template | None:
    """The template a setting names: "auto" guesses from the model's file name, "none" (or
    an unknown family under "auto") keeps the runtime's own."""
    if choice == "none":
        return None
    if choice != "auto":
        if choice not in TEMPLATES:
            raise ParleyError(f"Unknown chat template {choice!r} for the RKLLM model.",
                              f"Use auto, none or one of: {', '.join(TEMPLATES)}.")
        return TEMPLATES[choice]
    lowered = model_name.lower()
    return next((TEMPLATES[family] for fragment, family in _FAMILIES if fragment in lowered),
                None)


def split_system(messages: Sequence[ChatMessage]) -> tuple[str, list[ChatMessage]]:
    """The system prompt (the first message, if it is one) and the conversation after it."""
    if messages and messages[0].role == "system":
        return messages[0].content, list(messages[1:])
    return "", list(messages)


def turn_text(messages: Sequence[ChatMessage]) -> str:
    """A user turn's words, with the notes before it (system messages) in brackets first."""
    return "\n".join(f"[{m.content}]" if m.role == "system" else m.content for m in messages)


def replay(conversation: Sequence[ChatMessage], template: Template | None,
           system: str = "") -> str:
    """The whole conversation as one prompt ending with its last user turn. With a template
    the earlier turns are written in it (the runtime adds the first prefix and the last
    postfix); without one they are written as a transcript, after the system prompt."""
    turns: list[tuple[list[ChatMessage], str]] = []
    pending: list[ChatMessage] = []
    for message in conversation:
        if message.role == "assistant":
            calls = "".join(f'<tool_call>{{"name": "{c.name}", "arguments": {c.arguments}}}'
                            "</tool_call>" for c in message.tool_calls)
            turns.append((pending, message.content + calls))
            pending = []
        elif message.role == "tool":
            pending.append(ChatMessage("user", f"<tool_response>\n{message.content}\n"
                                       "</tool_response>"))
        else:
            pending.append(message)
    last = turn_text(pending)
    if template is not None:
        return "".join(f"{turn_text(said)}{template.postfix}{reply}{template.end}"
                       f"{template.prefix}" for said, reply in turns) + last
    lines = [system] if system else []
    if turns:
        lines.append("The conversation so far:")
        for said, reply in turns:
            lines += [f"User: {turn_text(said)}", f"Assistant: {reply}"]
        lines.append("")
    return "\n".join([*lines, last]) if lines else last
