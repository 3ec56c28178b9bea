"""The conversation core: the Agent, its events, what it speaks into and how it listens. No Qt."""
