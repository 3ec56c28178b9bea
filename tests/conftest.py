"""Shared fixtures: the real default models, and markers taken from each test's folder."""

from __future__ import annotations

import asyncio
import gc
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engines.model_ref import KINDS, Kind, ModelRef
from tests.pulse import PulseAudio

# Widgets render offscreen in tests; the window test under Xvfb starts its own process.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The terminal commands keep their conversations: a test that does not choose a data folder
# of its own (`user_dirs`) writes into this one, never into the user's history.
os.environ.setdefault("PARLEY_DATA_DIR", tempfile.mkdtemp(prefix="parley-test-data-"))

_FOLDER_MARKERS = {"unit": pytest.mark.unit, "integration": pytest.mark.integration,
                   "e2e": pytest.mark.e2e, "bundle": pytest.mark.bundle}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(str(item.fspath)).parent.name
        if folder in _FOLDER_MARKERS:
            item.add_marker(_FOLDER_MARKERS[folder])


@pytest.fixture(scope="session")
def default_models() -> dict[Kind, ModelRef]:
    """The default model of each kind as this machine uses it (the catalog's, or its
    low-memory choice), as installed by `make setup` into the models folder."""
    from engines.models import for_this_machine, load_catalog, resolve

    catalog = load_catalog()
    return {kind: resolve(for_this_machine(catalog.defaults[kind], kind, catalog), kind)
            for kind in KINDS}


@pytest.fixture(scope="session")
def pulse() -> Iterator[PulseAudio]:
    """The virtual mic and speaker. A missing PulseAudio fails the tests, never skips them:
    a skipped device test would look like a passing one."""
    server = PulseAudio()
    error = None
    try:
        server.start()
    except RuntimeError as e:
        error = str(e)
    if error is not None:
        pytest.fail(error, pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def user_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh settings file and data folder, so tests never touch the user's own."""
    monkeypatch.setenv("PARLEY_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


@pytest.fixture
def app_loop(qapp: Any) -> Iterator[asyncio.AbstractEventLoop]:
    """A qasync loop on the real Qt event loop: `loop.run_until_complete(...)` drives both."""
    import qasync

    class QtLoop(qasync.QEventLoop):  # type: ignore[misc]
        """qasync runs one last pass of Qt events after run_until_complete's loop stops,
        with no running asyncio loop: a task stepped then (the voice loop's listener) would
        die. Keep this loop the running one through that pass."""

        def _after_run_forever(self) -> None:
            super()._after_run_forever()
            asyncio.events._set_running_loop(self)

        def run_until_complete(self, future: Any) -> Any:
            try:
                return super().run_until_complete(future)
            finally:
                asyncio.events._set_running_loop(None)

    gc.collect()
    loop = QtLoop(qapp)
    asyncio.set_event_loop(loop)
    yield loop
    loop.close()
    asyncio.set_event_loop(None)
    # Qt objects left in reference cycles must die here, on the main thread: collected on
    # an audio or download thread they would leave Qt a dangling timer (a crash later).
    gc.collect()


@pytest.fixture
def controller(pulse: PulseAudio, user_dirs: Path, app_loop: asyncio.AbstractEventLoop
               ) -> Iterator[Any]:
    """The real Controller (worker, default models, PulseAudio devices, SQLite) started on
    the Qt loop; `controller.loop` is that loop."""
    from app.control.controller import Controller
    from app.settings import load_settings
    from app.storage import Storage, default_db_path

    storage = Storage(default_db_path())
    ctl = Controller(load_settings(), storage)
    ctl.loop = app_loop  # type: ignore[attr-defined]
    app_loop.run_until_complete(ctl.start())
    yield ctl
    app_loop.run_until_complete(ctl.close())
    storage.close()


@pytest.fixture
def realtime_servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Start scripted Realtime servers; the SDK finds the latest through OPENAI_BASE_URL and
    a test key in OPENAI_API_KEY, as a user's would. Each must end with no protocol fault."""
    from tests.realtime_server import TEST_KEY, RealtimeServer, Scenario

    servers: list[RealtimeServer] = []

    def start(scenario: Scenario) -> RealtimeServer:
        server = RealtimeServer(scenario).start()
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
        assert server.faults == [] and server.rejected == []
