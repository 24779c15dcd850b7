"""The library version, in a module of its own so any module can record it (saved routers do)
without importing the package ``__init__``."""

__version__ = "0.1.0"
