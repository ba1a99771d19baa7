"""The package's version, where every layer can read it (the package root sits above them all)."""

__version__ = "0.1.0"
