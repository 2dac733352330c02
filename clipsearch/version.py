"""The installed clipsearch version, recorded in every file clipsearch writes."""

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("clipsearch")
except PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0+unknown"
