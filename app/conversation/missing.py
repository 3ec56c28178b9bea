"""Which of the chosen models are not installed, and what Parley can still do without them.

Models are not inside a bundle, so a first run has none: the window's first-run offer, its
notice and the terminal commands all name them from here, in the same words.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from app.settings import Settings
from engines.errors import ModelError
from engines.model_ref import KINDS, Kind
from engines.models import CorruptModelError, load_catalog, resolve

WHAT: dict[Kind, str] = {"stt": "speech recognition", "llm": "language model", "tts": "voice",
                         "vad": "voice detection"}
WITHOUT: dict[Kind, str] = {
    "stt": "No speech recognition model: speech input is off.",
    "llm": "No language model: Parley cannot answer.",
    "tts": "No voice model: answers are shown, not spoken.",
    "vad": "No voice detection model: speech input is off.",
}
"""What the user loses while a kind has no model."""
PULL_DEFAULTS = "parley models pull --defaults"
IMPORT_ARCHIVE = "parley models import FILE"


@dataclass(frozen=True)
class MissingModel:
    """A chosen catalog model that a download or a models archive would install."""

    kind: Kind
    name: str
    size: int | None
    default: bool
    """The catalog's default for this machine (`parley models pull --defaults` gets it)."""

    def line(self) -> str:
        size = human_size(self.size) if self.size is not None else "size unknown"
        return f"{self.kind.upper()} ({WHAT[self.kind]}): {self.name}, {size}"


def human_size(size: int) -> str:
    """Decimal units, as disks and download pages count them."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            digits = 1 if size < 10 * scale else 0
            return f"{size / scale:.{digits}f} {unit}"
    return f"{size} B"


def not_installed(settings: Settings) -> list[MissingModel]:
    """The chosen catalog models that are simply not on this machine. A damaged one, or a
    file of the user's that moved, is another problem: its own error says what to do."""
    catalog = load_catalog()
    missing = []
    for kind in KINDS:
        spec = settings.model(kind)
        if spec not in catalog or catalog.get(spec).kind != kind or catalog.get(spec).builtin:
            continue
        entry = catalog.get(spec)
        try:
            resolve(spec, kind, catalog)
        except CorruptModelError:
            continue
        except ModelError:
            missing.append(MissingModel(kind, entry.name, entry.size or entry.approx_size,
                                        catalog.choice(kind).name == entry.name))
    return missing


def without(kinds: Iterable[Kind]) -> str:
    """What does not work, in one line (empty when nothing is missing)."""
    return " ".join(WITHOUT[kind] for kind in KINDS if kind in set(kinds))


def how_to_get(missing: list[MissingModel]) -> str:
    """Both ways to install `missing` from a terminal."""
    pull = (f"`{PULL_DEFAULTS}`" if all(m.default for m in missing)
            else " and ".join(f"`parley models pull {m.name}`" for m in missing))
    return (f"Download them with {pull}, or install them from a models archive (made by "
            f"`make models-archive`) with `{IMPORT_ARCHIVE}`.")


def missing_error(settings: Settings, errors: Mapping[Kind, ModelError]) -> ModelError:
    """One error for every model that cannot be found, rather than one per start.

    The catalog models that are not installed are listed together with how to get them;
    any other problem (a damaged model, a path that is gone) keeps its own words."""
    missing = [m for m in not_installed(settings) if m.kind in errors]
    others = [err for kind, err in errors.items() if kind not in {m.kind for m in missing}]
    if not missing and len(others) == 1:
        return others[0]
    lines = [f"  - {m.line()}" for m in missing]
    lines += [f"  - {err.message}" for err in others]
    hints = [how_to_get(missing)] if missing else []
    hints += [err.hint for err in others if err.hint]
    return ModelError("These models are missing:\n"
                      + "\n".join(lines), " ".join(hints))
