"""Microphone feed → CloudAgent: the cloud mode's counterpart of `app.conversation.voice`.
No Qt.

The server does the endpointing (its VAD decides when the user has finished), so this
only streams the cleaned blocks up, with mute and push-to-talk (audio goes up only while
the key is held). The feed cancels the speaker's echo when there is a far end, so that
Parley's own voice does not sound like the user talking over it; the service hears AEC3's
output only (its VAD would take a trace of Parley for speech).
"""

from __future__ import annotations

from app.cloud.agent import CloudAgent
from app.conversation.mic import MicFeed
from audio.devices import DeviceInfo
from audio.echo import FarEnd

_BLOCK_MS = 30


class CloudVoice:
    def __init__(self, agent: CloudAgent, far_end: FarEnd | None) -> None:
        self.agent = agent
        self.feed = MicFeed(agent.publish, lambda: far_end, linear=False)
        self._holding = False

    @property
    def push_to_talk(self) -> bool:
        return self.agent.settings.turn_detection == "push_to_talk"

    def press_to_talk(self) -> None:
        """Push-to-talk: the held audio is the turn. With server-side turn detection the
        key only stops a reply, as Space does in local mode."""
        if self.push_to_talk:
            self._holding = True
            self.agent.press_to_talk()
        else:
            self.agent.interrupt()

    def release_to_talk(self) -> None:
        if self._holding:
            self._holding = False
            self.agent.release_to_talk()

    async def run(self, mic: DeviceInfo) -> None:
        """Stream the microphone until cancelled."""
        with self.feed.capture(mic, _BLOCK_MS):
            while True:
                (block, _), captured_at = await self.feed.next()
                if block.size and not self.feed.muted and (self._holding or not self.push_to_talk):
                    self.agent.hear(block, captured_at)
