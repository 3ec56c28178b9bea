"""The PySide6 desktop window: renders Agent events, sends Controller commands."""
