"""An OpenAI-compatible server that routes, samples and votes behind one model name.

Point any OpenAI client at ``http://127.0.0.1:8000/v1`` and ask for model ``avengers``. The wire
format is OpenAI's; the routing account travels in an extra top-level ``avengers`` field (and in
the final chunk of a stream) plus ``x-avengers-*`` headers, which standard clients ignore.

Profiles (the requested ``model``):

* ``avengers`` -- the configured strategy (default: self-consistency, 10 samples, vote);
* ``avengers-fast`` -- one sample, cost-aware routing (``alpha`` 0.5);
* any candidate's name -- pinned to that candidate (still falls back if it fails).

Per-request overrides, as extra JSON fields (``extra_body`` in the openai client):
``n_samples``, ``alpha``, ``strategy``, ``answer_type``, ``max_cost``, and ``conversation`` (also
the ``X-Conversation-Id`` header: the conversation stays on one model, see
:mod:`avengers.stores.conversations`). ``POST /v1/route`` returns the routing decision alone.

Modules: :mod:`.app` (the factories), :mod:`.routes`, :mod:`.middleware`, :mod:`.wire` (reading
requests), :mod:`.replies` (writing responses and stream chunks), :mod:`.state` (profiles and the
per-app state), :mod:`.metrics`, :mod:`.auth` (client keys).
"""

from .app import app_from_env, create_app
from .auth import load_api_keys
from .metrics import Metrics
from .state import DEFAULT_MAX_BODY, DEFAULT_MAX_TOKENS, Profile, ServerState, default_profiles

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_TOKENS",
    "Metrics",
    "Profile",
    "ServerState",
    "app_from_env",
    "create_app",
    "default_profiles",
    "load_api_keys",
]
