"""The edgetrt version, in a module of its own so engine files and reports can record it
without importing the whole ``edge`` facade."""

__version__ = "0.1.0"
