"""Development and release tools (run as scripts: python tools/<name>.py)."""
