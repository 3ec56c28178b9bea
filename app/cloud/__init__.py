"""Cloud mode: the same conversation on the OpenAI Realtime API (GA protocol, WebSocket)."""
