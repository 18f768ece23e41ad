"""Sample subject of the determinism drill: its wheel embeds the build date and host name."""

__version__ = "1.0.0"


def build_info() -> str:
    """When and where this copy was built."""
    from cihub_sample_buildinfo import _buildinfo  # written at build time by setup.py

    return f"built on {_buildinfo.BUILD_DATE} by {_buildinfo.BUILD_HOST}"
