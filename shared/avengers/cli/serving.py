"""``avengers serve``: the OpenAI-compatible routing server."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import fail, friendly, router_arg

# Seconds `serve` gives requests in flight after SIGTERM (uvicorn's graceful shutdown); the
# deployment recipe (deploy/) gives each replica longer than this before it is killed.
DRAIN_TIMEOUT = 30.0


@friendly
def serve(
    endpoints: Annotated[
        Path,
        typer.Option(
            "--endpoints", "-e", envvar="AVENGERS_ENDPOINTS", help="Endpoint file (YAML/TOML/JSON)."
        ),
    ],
    router: Annotated[
        str,
        typer.Option(
            "--router",
            "-r",
            envvar="AVENGERS_ROUTER",
            help="Router folder, hub id, or 'pretrained'.",
        ),
    ] = "pretrained",
    host: Annotated[
        str, typer.Option(envvar="AVENGERS_HOST", help="Address to bind (loopback by default).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="AVENGERS_PORT", help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(envvar="AVENGERS_WORKERS", help="Worker processes.")] = 1,
    strategy: Annotated[
        str, typer.Option(help="self_consistency, model_switch or direct.")
    ] = "self_consistency",
    samples: Annotated[int, typer.Option("--samples", "-n", help="Samples per model.")] = 10,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.7,
    api_key_file: Annotated[
        Path | None,
        typer.Option(
            envvar="AVENGERS_SERVER_KEY_FILE",
            help="File of accepted client keys, one per line (also: $AVENGERS_SERVER_KEYS).",
        ),
    ] = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(help="Allow browser calls from this origin (CORS is off by default)."),
    ] = None,
    max_body: Annotated[
        int, typer.Option(envvar="AVENGERS_MAX_BODY", help="Largest request body in bytes.")
    ] = 1_000_000,
    max_tokens: Annotated[
        int,
        typer.Option(envvar="AVENGERS_MAX_TOKENS", help="Largest max_tokens a client may ask for."),
    ] = 4096,
    request_timeout: Annotated[
        float,
        typer.Option(
            envvar="AVENGERS_REQUEST_TIMEOUT", help="Request deadline in seconds (0: none)."
        ),
    ] = 60.0,
    max_fallbacks: Annotated[
        int,
        typer.Option(
            envvar="AVENGERS_MAX_FALLBACKS", help="Fallback models per request (-1: all)."
        ),
    ] = 2,
    embed_cache: Annotated[
        str,
        typer.Option(
            envvar="AVENGERS_EMBED_CACHE",
            help="Query embedding cache: memory (default), disk (keeps user queries on disk), none.",
        ),
    ] = "memory",
    breaker_threshold: Annotated[
        int,
        typer.Option(
            envvar="AVENGERS_BREAKER_THRESHOLD",
            help="Consecutive failures that open a model's circuit (0: no breaker).",
        ),
    ] = 5,
    breaker_cooldown: Annotated[
        float,
        typer.Option(envvar="AVENGERS_BREAKER_COOLDOWN", help="Seconds a circuit stays open."),
    ] = 30.0,
    feedback_store: Annotated[
        str | None,
        typer.Option(
            envvar="AVENGERS_FEEDBACK_STORE",
            help="Accept POST /v1/feedback, kept in this SQLite file or redis:// URL.",
        ),
    ] = None,
    store_timeout: Annotated[
        float,
        typer.Option(
            envvar="AVENGERS_STORE_TIMEOUT",
            help="Seconds one feedback/conversation store call may take; a store that fails or "
            "stalls degrades feedback, never answers.",
        ),
    ] = 1.0,
    require_store: Annotated[
        bool,
        typer.Option(
            envvar="AVENGERS_REQUIRE_STORE",
            help="/ready answers 503 while the store is degraded (default: still ready).",
        ),
    ] = False,
    feedback_retention: Annotated[
        float,
        typer.Option(
            envvar="AVENGERS_FEEDBACK_RETENTION",
            help="Seconds an answer can be rated (then forgotten; 0: keep). Default 7 days.",
        ),
    ] = 7 * 24 * 3600.0,
    feedback_max: Annotated[
        int,
        typer.Option(
            envvar="AVENGERS_FEEDBACK_MAX_RESPONSES",
            help="Remembered answers kept at most (oldest forgotten first).",
        ),
    ] = 1_000_000,
    conversations: Annotated[
        str,
        typer.Option(
            envvar="AVENGERS_CONVERSATIONS",
            help="Where conversations' models are kept: memory (each worker's own; nothing "
            "written) or store (the --feedback-store, shared by all workers).",
        ),
    ] = "memory",
    conversation_ttl: Annotated[
        float,
        typer.Option(
            envvar="AVENGERS_CONVERSATION_TTL",
            help="Seconds a conversation may stay idle before it is routed afresh.",
        ),
    ] = 3600.0,
    conversation_max: Annotated[
        int,
        typer.Option(envvar="AVENGERS_CONVERSATION_MAX", help="Conversations kept at most."),
    ] = 10_000,
    explore: Annotated[
        float | None,
        typer.Option(
            help="Share of queries that are exploration candidates, 0-1 (default: the router's "
            "setting; see docs/online.md).",
        ),
    ] = None,
    explore_rule: Annotated[
        str | None,
        typer.Option(
            help="How exploration picks: thompson, or top-two for a learning phase (default: the "
            "router's setting).",
        ),
    ] = None,
    follow_interval: Annotated[
        float,
        typer.Option(
            envvar="AVENGERS_FOLLOW_INTERVAL",
            help="Seconds between two reads of the feedback store's rating log: every worker and "
            "replica learns from every rating (0: only from its own).",
        ),
    ] = 0.5,
    reload_interval: Annotated[
        float,
        typer.Option(
            envvar="AVENGERS_RELOAD_INTERVAL",
            help="Seconds between two checks of the --router folder for a new version, swapped "
            "in without a restart (0: never).",
        ),
    ] = 2.0,
    drain_timeout: Annotated[
        float,
        typer.Option(
            envvar="AVENGERS_DRAIN_TIMEOUT",
            help="On SIGTERM or Ctrl-C: stop accepting, then give requests in flight this many "
            "seconds to finish.",
        ),
    ] = DRAIN_TIMEOUT,
) -> None:
    """Serve an OpenAI-compatible API that routes, samples and votes behind model 'avengers'."""
    import uvicorn

    from ..answering.answer import Answerer, SamplingConfig
    from ..answering.config import as_strategy
    from ..server import create_app, load_api_keys
    from ..server.app import CONVERSATION_MODES
    from ..server.embedding import as_embed_cache
    from ..server.protocol import uvicorn_settings
    from ..transport.endpoints import check_names

    if workers < 1:
        fail("--workers must be >= 1")
    if not drain_timeout > 0:
        fail("--drain-timeout must be > 0")
    cfg = SamplingConfig(strategy=as_strategy(strategy), n_samples=samples, temperature=temperature)
    keys = load_api_keys(file=api_key_file)
    answerer = Answerer(router_arg(router), endpoints, cfg)  # validates everything up front
    check_names(answerer.backend.models(), answerer.router.models_, source=str(endpoints))
    overrides = {
        name: value
        for name, value in (("explore", explore), ("explore_rule", explore_rule))
        if value is not None
    }
    answerer.router.set_params(**overrides)  # a bad value: ConfigError, one line and exit 2
    if host not in ("127.0.0.1", "localhost", "::1") and not keys:
        typer.secho(
            f"warning: binding {host} without authentication; set AVENGERS_SERVER_KEYS or --api-key-file",
            fg=typer.colors.YELLOW, err=True,
        )  # fmt: skip
    typer.echo(f"avengers serving on http://{host}:{port}/v1 (models: avengers, avengers-fast, "
               f"{', '.join(m for m in answerer.router.models_ if m in answerer.backend.models())})")  # fmt: skip
    common: dict[str, Any] = {"host": host, "port": port, "timeout_graceful_shutdown": drain_timeout,
              "log_level": "warning", "access_log": False, **uvicorn_settings()}  # fmt: skip
    as_embed_cache(embed_cache)  # fail now, not in each worker
    if conversations not in CONVERSATION_MODES:
        fail(f"--conversations must be one of {', '.join(CONVERSATION_MODES)}")
    if conversations == "store" and not feedback_store:
        fail("--conversations store keeps them in the feedback store: give --feedback-store")
    if not conversation_ttl > 0 or conversation_max < 1:
        fail("--conversation-ttl must be > 0 and --conversation-max >= 1")
    if workers > 1 and conversations == "memory":
        typer.secho(
            f"note: --workers {workers} with --conversations memory: each worker knows only the "
            "conversations it served, so a conversation key may change model when a turn reaches "
            "another worker; --conversations store --feedback-store FILE shares them",
            fg=typer.colors.YELLOW, err=True,
        )  # fmt: skip
    live: dict[str, Any] = {"request_timeout": request_timeout, "max_fallbacks": None if max_fallbacks < 0 else max_fallbacks,
            "embed_cache": embed_cache, "breaker_threshold": breaker_threshold,
            "breaker_cooldown": breaker_cooldown, "conversations": conversations,
            "conversation_ttl": conversation_ttl, "conversation_max_entries": conversation_max,
            "store_timeout": store_timeout, "require_store": require_store,
            "follow_interval": follow_interval, "reload_interval": reload_interval}  # fmt: skip
    if not follow_interval >= 0 or not reload_interval >= 0:
        fail("--follow-interval and --reload-interval must be >= 0")
    router_dir = Path(router).resolve() if Path(router).is_dir() else None
    if not store_timeout > 0 or feedback_retention < 0 or feedback_max < 1:
        fail("--store-timeout must be > 0, --feedback-retention >= 0, --feedback-max >= 1")
    if workers == 1:
        from ..stores.feedback import open_store

        store = open_store(feedback_store, timeout=store_timeout,
                           retention=feedback_retention or None,
                           max_responses=feedback_max) if feedback_store else None  # fmt: skip
        app = create_app(answerer, api_keys=keys, max_body_bytes=max_body,
                         max_tokens_limit=max_tokens, cors_origins=cors_origin or None,
                         feedback_store=store, freeze_gc=True, router_path=router_dir,
                         router_overrides=overrides, **live)  # fmt: skip
        uvicorn.run(app, **common)
        return
    os.environ.update({
        "AVENGERS_ROUTER": str(router_dir or router), "AVENGERS_ENDPOINTS": str(endpoints.resolve()),
        "AVENGERS_CONFIG": json.dumps({"strategy": strategy, "n_samples": samples, "temperature": temperature}),
        "AVENGERS_MAX_BODY": str(max_body), "AVENGERS_MAX_TOKENS": str(max_tokens),
        "AVENGERS_CORS": ",".join(cors_origin or []),
        "AVENGERS_SERVER_KEY_FILE": str(api_key_file or ""),
        "AVENGERS_REQUEST_TIMEOUT": str(request_timeout), "AVENGERS_MAX_FALLBACKS": str(max_fallbacks),
        "AVENGERS_EMBED_CACHE": embed_cache, "AVENGERS_BREAKER_THRESHOLD": str(breaker_threshold),
        "AVENGERS_BREAKER_COOLDOWN": str(breaker_cooldown),
        "AVENGERS_FEEDBACK_STORE": feedback_store or "",
        "AVENGERS_CONVERSATIONS": conversations, "AVENGERS_CONVERSATION_TTL": str(conversation_ttl),
        "AVENGERS_CONVERSATION_MAX": str(conversation_max),
        "AVENGERS_STORE_TIMEOUT": str(store_timeout), "AVENGERS_REQUIRE_STORE": str(int(require_store)),
        "AVENGERS_FEEDBACK_RETENTION": str(feedback_retention),
        "AVENGERS_FEEDBACK_MAX_RESPONSES": str(feedback_max),
        "AVENGERS_ROUTER_SETTINGS": json.dumps(overrides),
        "AVENGERS_FOLLOW_INTERVAL": str(follow_interval),
        "AVENGERS_RELOAD_INTERVAL": str(reload_interval),
    })  # fmt: skip
    uvicorn.run("avengers.server:app_from_env", factory=True, workers=workers, **common)
