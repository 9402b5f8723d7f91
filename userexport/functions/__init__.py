"""Thin Azure Functions triggers: parse the input, call the core, shape the response."""
