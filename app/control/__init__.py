"""What the window asks of Parley, split by job; plain asyncio, no Qt."""
