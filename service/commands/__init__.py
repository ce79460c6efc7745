"""CLI commands of the service, each module exposing ``register(app)`` (wired in ``cli.py``)."""
