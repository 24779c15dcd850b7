"""The routing server's former home, kept as an import path: ``from avengers.serve import
create_app`` (used in docs and tests) keeps working. The code lives in :mod:`avengers.server`."""

from .server import (
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_TOKENS,
    Metrics,
    Profile,
    app_from_env,
    create_app,
    default_profiles,
    load_api_keys,
)

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_TOKENS",
    "Metrics",
    "Profile",
    "app_from_env",
    "create_app",
    "default_profiles",
    "load_api_keys",
]
