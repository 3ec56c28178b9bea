"""The systemd unit restarts a killed or frozen Parley (issue 16, must-show 3).

This machine has no systemd as PID 1 (a VM whose init is its own agent), but Debian's
systemd is installed, and a real user manager runs here: `systemd --user`, in a mount
namespace of its own where /run/systemd/system exists (a user manager refuses to start
on a system "not booted with systemd" otherwise), in a cgroup of its own, with a fresh
HOME and XDG_RUNTIME_DIR. `systemctl --user` reaches it through its private socket in that
runtime directory, as on a desktop.

The unit under test is the real one, installed by the real packaging/install-service.sh
and removed by uninstall-service.sh. A drop-in changes only what cannot run here:
ExecStart is this file run as a script, a stand-in that does for systemd exactly what
`parley run` does (app/watchdog.py: READY=1, then WATCHDOG=1 from its event loop) without
loading models or opening a display; WatchdogSec is 3 s instead of 30 s, so a frozen
stand-in is caught quickly; its output goes to a file, as there is no journal here.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from app.watchdog import Watchdog
from engines.models import models_dir
from tests.waiting import blocking_until

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
WATCHDOG_S = 3
READY = f"ready, pinging every {WATCHDOG_S / 2} s"  # the stand-in's line at each start
# Start-up of the manager, a restart (RestartSec=5s plus the stand-in's start), a watchdog
# timeout (3 s) then its abort: each well inside these, even on a loaded machine.
START_S, RESTART_S = 30.0, 40.0
PARLEY_START_S = 240.0
"""Parley's own start: spawning the worker and loading Whisper, the LLM and Piper."""


@dataclass
class UserManager:
    """A running `systemd --user`, and the environment that reaches it."""

    process: subprocess.Popen[bytes]
    env: dict[str, str]
    home: Path
    log: Path

    def systemctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["systemctl", "--user", *args], env=self.env, text=True,
                              capture_output=True, timeout=60)

    def script(self, name: str, *args: str) -> str:
        """Run one of packaging's scripts as the user would; its output, or a failure."""
        result = subprocess.run([str(PACKAGING / name), *args], env=self.env, text=True,
                                capture_output=True, timeout=120)
        assert result.returncode == 0, f"{name} {args}: {result.stdout}{result.stderr}"
        return result.stdout + result.stderr

    def unit(self) -> dict[str, str]:
        """parley.service's state as systemd reports it."""
        shown = self.systemctl("show", "parley.service", "-p",
                               "MainPID,ActiveState,SubState,NRestarts,Result").stdout
        return dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)

    def status(self) -> str:
        return (f"{self.unit()}\n{self.systemctl('status', 'parley.service').stdout}\n"
                f"manager log:\n{self.log.read_text(errors='replace')[-3000:]}")


def _cgroup_roots() -> list[Path]:
    """The hierarchies systemd tracks its processes in: cgroup v2, and v1's name=systemd."""
    roots = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, where, kind, options = line.split()[:4]
        if kind == "cgroup2" or (kind == "cgroup" and "name=systemd" in options.split(",")):
            roots.append(Path(where))
    return roots


def _is_empty(group: Path) -> bool:
    return not (group / "cgroup.procs").read_text().strip()


def _remove_cgroup(top: Path) -> None:
    """Empty and remove the manager's cgroup tree (it leaves its slices behind)."""
    inner = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
    for group in [*inner, top]:
        for pid in (group / "cgroup.procs").read_text().split():
            os.kill(int(pid), signal.SIGKILL)  # only ever processes of this test
        blocking_until(partial(_is_empty, group), 10, f"{group} to empty")
        group.rmdir()


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UserManager]:
    if os.geteuid() != 0:
        pytest.fail("the systemd test needs root: it gives `systemd --user` a mount "
                    "namespace and a cgroup of its own", pytrace=False)
    for tool in ("systemd", "systemctl", "unshare"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: apt-get install systemd util-linux",
                        pytrace=False)
    base = tmp_path_factory.mktemp("systemd")
    home, runtime = base / "home", base / "run"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "XDG_RUNTIME_DIR": str(runtime), "LANG": "C.UTF-8"}
    # Its own cgroups, always: a manager left in the root cgroup takes every process of
    # the machine into its init.scope.
    cgroups = [root / f"parley-test-{os.getpid()}" for root in _cgroup_roots()]
    assert cgroups, "no cgroup hierarchy for systemd is mounted (/proc/self/mounts)"
    for group in cgroups:
        group.mkdir()
    # Join the cgroups, mark this namespace "booted with systemd", become the manager.
    boot = ('set -e; for g in "$@"; do echo $$ > "$g/cgroup.procs"; done; '
            "mount -t tmpfs parley-test /run/systemd; mkdir /run/systemd/system; "
            "exec systemd --user")
    log = base / "manager.log"
    with log.open("wb") as out:
        process = subprocess.Popen(["unshare", "--mount", "--propagation", "private",
                                    "sh", "-c", boot, "sh", *map(str, cgroups)],
                                   env={**env, "SYSTEMD_LOG_TARGET": "console"}, stdout=out,
                                   stderr=subprocess.STDOUT)
    user = UserManager(process, env, home, log)
    try:
        blocking_until(lambda: process.poll() is not None
                       or user.systemctl("is-active", "default.target").returncode == 0,
                       START_S, lambda: f"the user manager to start: {user.status()}")
        assert process.poll() is None, user.status()
        yield user
    finally:
        process.terminate()  # the manager stops its units and exits
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for group in cgroups:
            _remove_cgroup(group)


@pytest.fixture
def service(manager: UserManager, tmp_path: Path) -> Iterator[Path]:
    """The real unit, installed for the kiosk and started, running the stand-in; its
    output file. Uninstalled afterwards, which the test checks too."""
    output = tmp_path / "stand-in.log"
    drop_in = manager.home / ".config/systemd/user/parley.service.d"
    drop_in.mkdir(parents=True)
    (drop_in / "test.conf").write_text(
        "[Service]\nExecStart=\n"
        f"ExecStart={sys.executable} {Path(__file__)}\n"
        f"Environment=PYTHONPATH={ROOT}\n"
        f"WatchdogSec={WATCHDOG_S}s\n"
        f"StandardOutput=append:{output}\nStandardError=append:{output}\n")
    said = manager.script("install-service.sh")  # the kiosk, Parley's own path
    assert "graphical-session.target" in said  # no desktop here: enabled, not started
    unit = (manager.home / ".config/systemd/user/parley.service").read_text()
    assert f'ExecStart="{ROOT}/.venv/bin/parley" run --kiosk\n' in unit
    assert (manager.home / ".config/systemd/user/graphical-session.target.wants"
            / "parley.service").is_symlink()
    assert manager.systemctl("start", "parley.service").returncode == 0, manager.status()
    try:
        yield output
    finally:
        manager.script("uninstall-service.sh")
        shutil.rmtree(drop_in)
        assert manager.systemctl("cat", "parley.service").returncode != 0  # gone
        assert not (manager.home / ".config/systemd/user/parley.service").exists()


def _restarted(manager: UserManager, old_pid: int) -> bool:
    unit = manager.unit()
    return (unit["ActiveState"] == "active" and unit["SubState"] == "running"
            and int(unit["MainPID"]) not in (0, old_pid))


def test_a_killed_parley_is_started_again(manager: UserManager, service: Path) -> None:
    before = manager.unit()
    assert before["ActiveState"] == "active", manager.status()  # READY=1 was heard
    old_pid = int(before["MainPID"])
    os.kill(old_pid, signal.SIGKILL)
    blocking_until(lambda: _restarted(manager, old_pid), RESTART_S,
                   lambda: f"systemd to start Parley again: {manager.status()}")
    assert int(manager.unit()["NRestarts"]) == int(before["NRestarts"]) + 1
    assert service.read_text().count(READY) == 2


def test_a_frozen_parley_is_killed_by_the_watchdog_and_started_again(
        manager: UserManager, service: Path) -> None:
    """SIGSTOP freezes the stand-in, its loop with it: the pings stop, the watchdog fires
    (SIGABRT, so Python's fault handler prints where it hung) and systemd restarts it."""
    old_pid = int(manager.unit()["MainPID"])
    stopped = time.monotonic()
    os.kill(old_pid, signal.SIGSTOP)
    blocking_until(lambda: _restarted(manager, old_pid), RESTART_S,
                   lambda: f"the watchdog to restart a frozen Parley: {manager.status()}")
    assert time.monotonic() - stopped >= WATCHDOG_S  # not before the watchdog's time
    said = service.read_text()
    # SIGABRT, which only the watchdog sends (the test sent SIGSTOP alone)
    assert "Fatal Python error: Aborted" in said, said
    assert said.count(READY) == 2


def test_the_real_parley_killed_under_the_unit_is_started_again(
        manager: UserManager, pulse: Any, tmp_path: Path) -> None:
    """No stand-in: the unit as install-service.sh writes it for a board with no display
    (`parley run --headless`), on the test's PulseAudio; a drop-in only points it at that
    server and at a settings and data folder of the test's. Active means Parley loaded its
    models and said READY=1; killed, systemd starts it again and it loads them again."""
    output = tmp_path / "parley.log"
    drop_in = manager.home / ".config/systemd/user/parley.service.d"
    drop_in.mkdir(parents=True)
    names = ("PULSE_SERVER", "PULSE_COOKIE", "PULSE_RUNTIME_PATH")
    environment = "".join(f"Environment={name}={pulse.env[name]}\n" for name in names)
    (drop_in / "test.conf").write_text(
        f"[Service]\n{environment}Environment=PARLEY_CONFIG={tmp_path / 'config.toml'}\n"
        f"Environment=PARLEY_DATA_DIR={tmp_path / 'data'}\n"
        f"Environment=PARLEY_MODELS_DIR={models_dir()}\n"  # the manager's HOME has none
        f"StandardOutput=append:{output}\nStandardError=append:{output}\n")
    manager.script("install-service.sh", "--headless")
    try:
        def active() -> bool:
            unit = manager.unit()
            return unit["ActiveState"] == "active" and unit["SubState"] == "running"

        blocking_until(active, PARLEY_START_S,
                       lambda: f"Parley to load its models: {manager.status()}\n"
                               f"{output.read_text(errors='replace')[-2000:]}")
        before = manager.unit()
        old_pid = int(before["MainPID"])
        os.kill(old_pid, signal.SIGKILL)
        blocking_until(lambda: _restarted(manager, old_pid), PARLEY_START_S + RESTART_S,
                       lambda: f"systemd to start Parley again: {manager.status()}\n"
                               f"{output.read_text(errors='replace')[-2000:]}")
        assert int(manager.unit()["NRestarts"]) == int(before["NRestarts"]) + 1
        assert output.read_text().count("Listening… speak now") == 2
    finally:
        manager.script("uninstall-service.sh")
        shutil.rmtree(drop_in)


def _verify(manager: UserManager) -> None:
    """systemd's own lint of the installed unit: no unknown key, no bad value."""
    unit = manager.home / ".config/systemd/user/parley.service"
    result = subprocess.run(["systemd-analyze", "--user", "verify", str(unit)],
                            env=manager.env, text=True, capture_output=True, timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_a_slow_start_is_not_killed_while_its_loop_runs(
        manager: UserManager, service: Path) -> None:
    """A start longer than TimeoutStartSec (a first model load, a kiosk waiting for a
    download) survives: the loop's pings before READY=1 extend the timeout."""
    slow = manager.home / ".config/systemd/user/parley.service.d/slow.conf"
    slow.write_text("[Service]\nTimeoutStartSec=2s\nEnvironment=STAND_IN_LOAD_S=6\n")
    assert manager.systemctl("daemon-reload").returncode == 0
    old = manager.unit()
    began = time.monotonic()
    assert manager.systemctl("restart", "--no-block", "parley.service").returncode == 0
    blocking_until(lambda: _restarted(manager, int(old["MainPID"])), RESTART_S,
                   lambda: f"the slow start to finish: {manager.status()}")
    assert time.monotonic() - began >= 6  # well past the 2 s start timeout
    assert manager.unit()["NRestarts"] == old["NRestarts"]  # never timed out and restarted
    assert service.read_text().count(READY) == 2


def test_install_and_uninstall_are_idempotent(manager: UserManager) -> None:
    """Headless starts with the manager (default.target); installing again, or as the
    kiosk, moves the one enable link; uninstalling twice is fine; --autostart writes a
    desktop entry with Parley's path instead."""
    config = manager.home / ".config"
    parley = f"{ROOT}/.venv/bin/parley"
    for _ in range(2):
        manager.script("install-service.sh", "--headless", "--no-start")
    unit = (config / "systemd/user/parley.service").read_text()
    assert f'ExecStart="{parley}" run --headless\n' in unit
    settings = [line for line in unit.splitlines() if not line.startswith("#")]
    assert "WantedBy=default.target" in settings
    assert not [line for line in settings if "graphical-session" in line]
    links = sorted(p.parent.name for p in config.rglob("parley.service") if p.is_symlink())
    assert links == ["default.target.wants"]
    assert manager.systemctl("is-enabled", "parley.service").stdout.strip() == "enabled"
    _verify(manager)
    manager.script("install-service.sh", "--no-start")
    links = sorted(p.parent.name for p in config.rglob("parley.service") if p.is_symlink())
    assert links == ["graphical-session.target.wants"]
    _verify(manager)
    manager.script("install-service.sh", "--autostart")
    entry = (config / "autostart/parley-kiosk.desktop").read_text()
    assert f"""Exec=sh -c "while true; do '{parley}' run --kiosk; sleep 5; done"\n""" in entry
    for _ in range(2):
        manager.script("uninstall-service.sh")
    assert not any(config.rglob("parley*"))
    assert manager.systemctl("is-enabled", "parley.service").returncode != 0


async def _stand_in() -> None:
    """What `parley run` tells systemd, on an asyncio loop of its own, with nothing else."""
    watchdog = Watchdog()
    watchdog.start()
    await asyncio.sleep(float(os.environ.get("STAND_IN_LOAD_S", "0")))  # "loading models"
    watchdog.ready()
    print(f"stand-in {os.getpid()} ready, pinging every {watchdog.interval_s} s", flush=True)
    await asyncio.Event().wait()  # until systemd stops it, or the test kills it


if __name__ == "__main__":
    asyncio.run(_stand_in())
