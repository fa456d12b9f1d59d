"""The installed proxitrace version (``0.0.0+unknown`` when running from a source tree)."""
from importlib.metadata import PackageNotFoundError, version as _version

__all__ = ["__version__"]

try:
    __version__ = _version("proxitrace")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"
