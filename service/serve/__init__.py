"""The server's room: ``steadyrank serve`` and everything it runs (never a client module)."""
