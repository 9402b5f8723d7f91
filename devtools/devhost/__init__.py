"""devhost: runs function_app locally with the Functions host's semantics (no `func` here)."""
