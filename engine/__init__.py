"""vcfscreen's imaging and inference core. Knows nothing of Kafka."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vcfscreen")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"
