"""userexport's command-line client: starts, follows, cancels and downloads exports of a
deployed userexport function app over its HTTP API (docs/cli.md). It talks HTTP only: it never
imports the app's own package, so `pip install` of the repository is all a script host needs."""
