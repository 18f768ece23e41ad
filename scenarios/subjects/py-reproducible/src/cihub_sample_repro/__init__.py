"""Sample subject of the determinism drill: nothing here depends on where or when it is built."""

__version__ = "1.0.0"


def greet(name: str) -> str:
    """Say hello."""
    return f"hello, {name}"
