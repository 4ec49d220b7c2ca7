"""Command-line interface: `bambu ...`."""
