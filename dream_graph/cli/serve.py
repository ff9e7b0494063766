"""`dream-graph serve`: run the HTTP service under uvicorn."""

from __future__ import annotations

import typer

LOG_FORMAT = "%(asctime)s %(levelname)s [%(correlation_id)s] %(name)s: %(message)s"


def log_config(level: str) -> dict:
    """uvicorn's and our logs on one stream, each line tagged with the request ID it belongs to."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "asgi_correlation_id.CorrelationIdFilter", "default_value": "-"}},
        "formatters": {"plain": {"format": LOG_FORMAT}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id"]},
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.access": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "dream_graph": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
        },
    }


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0 for all)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port."),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
    workers: int = typer.Option(
        1, "--workers", min=1, max=64, help="Server processes (one event loop each); use the number of cores."
    ),
) -> None:
    """Run the HTTP service (LangServe routes, chat playground, /generate, Slack, GitHub webhook) under uvicorn;
    several workers use several cores, each with its own run limits."""
    import uvicorn

    from dream_graph.cli import fail_usage
    from dream_graph.errors import ConfigError

    try:
        from dream_graph.service.app import app
    except ConfigError as exc:
        raise fail_usage(str(exc)) from None
    options = {"host": host, "port": port, "log_config": log_config(log_level), "log_level": log_level.lower()}
    if workers == 1:
        uvicorn.run(app, **options)
    else:  # uvicorn imports the app in each worker process by name
        uvicorn.run("dream_graph.service.app:app", workers=workers, **options)
