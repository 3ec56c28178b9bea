"""Picks the engine for a model by kind, format and priority.

A new backend is one `register` call; factories import their library lazily so that
listing or resolving models never pays for loading torch-sized dependencies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engines.errors import ModelError
from engines.model_ref import Kind, ModelRef
from engines.protocols import Engine

Options = Mapping[str, Any]
Factory = Callable[[ModelRef, Options], Engine]


@dataclass(frozen=True)
class Provider:
    name: str
    kind: Kind
    formats: frozenset[str]
    priority: int
    factory: Factory


class Registry:
    def __init__(self) -> None:
        self._providers: list[Provider] = []

    def register(
        self, name: str, kind: Kind, formats: set[str], factory: Factory, priority: int = 0
    ) -> None:
        self._providers.append(Provider(name, kind, frozenset(formats), priority, factory))

    def providers(self, kind: Kind) -> list[Provider]:
        return sorted(
            (p for p in self._providers if p.kind == kind), key=lambda p: -p.priority
        )

    def pick(self, ref: ModelRef) -> Provider:
        for provider in self.providers(ref.kind):
            if ref.format in provider.formats:
                return provider
        known = sorted({f for p in self.providers(ref.kind) for f in p.formats})
        raise ModelError(
            f"No {ref.kind.upper()} engine can run '{ref.name}' (format '{ref.format}').",
            f"Use a {ref.kind.upper()} model in one of these formats: {', '.join(known)}.",
        )

    def create(self, ref: ModelRef, options: Options) -> Engine:
        return self.pick(ref).factory(ref, {**dict(ref.tuning), **options})
