"""``causalkv serve``: run one node."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from causalkv.runtime.settings import NodeSettings, SettingsError, load_settings


def _fail(message: str) -> None:
    typer.echo(f"causalkv: {message}", err=True)
    raise typer.Exit(1)


def run_node(settings: NodeSettings) -> int:
    """Serve until SIGTERM/SIGINT; returns the process exit status."""
    import uvicorn

    from causalkv.api.app import Api
    from causalkv.runtime.logs import configure_logging
    from causalkv.runtime.node import NodeRuntime
    from causalkv.runtime.storage import StorageError

    configure_logging(settings)
    log = logging.getLogger("causalkv.serve")
    try:
        runtime = NodeRuntime(settings)
    except StorageError as error:
        typer.echo(f"causalkv: {error}", err=True)
        return 1
    api = Api(runtime)
    config = uvicorn.Config(
        api,
        host=settings.listen_host,
        port=settings.listen_port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        log_level=settings.log_level,
        timeout_graceful_shutdown=3,
        server_header=False,
        date_header=False,
        limit_concurrency=None,
        backlog=4096,
        ssl_certfile=None if settings.tls_certificate is None else str(settings.tls_certificate),
        ssl_keyfile=None if settings.tls_key is None else str(settings.tls_key),
    )
    server = uvicorn.Server(config)
    exit_status = 0

    def on_failure(error: BaseException) -> None:
        nonlocal exit_status
        exit_status = 70
        server.should_exit = True

    runtime.on_failure = on_failure
    log.info(
        "node %s listening on %s (storage: %s%s), recovered in %.2f s",
        settings.node_id,
        settings.listen,
        settings.storage,
        "" if settings.data_dir is None else f" in {settings.data_dir}",
        runtime.recovery_s,
    )
    if settings.cluster_secret is None and settings.listen_host not in (
        "127.0.0.1",
        "localhost",
        "::1",
    ):
        log.warning(
            "NO CLUSTER SECRET: anyone who can reach %s can change the view and inject updates;"
            " set --cluster-secret or CAUSALKV_CLUSTER_SECRET",
            settings.listen,
        )

    # uvicorn handles SIGTERM/SIGINT while it serves, then restores the previous
    # handlers and re-raises the signal. These handlers cover both ends: a signal
    # before uvicorn's own handlers are in place still stops the server, and the
    # re-raise after a clean stop is absorbed, so the process exits with status 0.
    def request_exit(signum: int, frame: object) -> None:
        server.should_exit = True

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_exit)
    server.run()
    if not server.started and exit_status == 0:
        return 1
    return exit_status


def serve(
    listen: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT to listen on [env CAUSALKV_LISTEN, ADDRESS, PORT; default 0.0.0.0:8081]"
        ),
    ] = None,
    node_id: Annotated[
        str | None,
        typer.Option(help="This node's id [env CAUSALKV_NODE_ID, NODE_IDENTIFIER, NODE_ID]"),
    ] = None,
    advertise: Annotated[
        str | None,
        typer.Option(
            help="This node's HOST:PORT as peers reach it [env CAUSALKV_ADVERTISE, ADDRESS]"
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Data directory [env CAUSALKV_DATA_DIR; default ./causalkv-data/<node id>]"
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(help="Storage engine: sqlite (durable) or memory [env CAUSALKV_STORAGE]"),
    ] = None,
    cluster_name: Annotated[
        str | None,
        typer.Option(
            help="Cluster name, recorded in the data directory [env CAUSALKV_CLUSTER_NAME]"
        ),
    ] = None,
    cluster_secret: Annotated[
        str | None,
        typer.Option(
            help="Shared secret for node-to-node and admin calls [env CAUSALKV_CLUSTER_SECRET]"
        ),
    ] = None,
    cluster_secret_file: Annotated[
        Path | None,
        typer.Option(help="File holding the cluster secret [env CAUSALKV_CLUSTER_SECRET_FILE]"),
    ] = None,
    client_token: Annotated[
        str | None,
        typer.Option(
            help="Optional token clients must send for data endpoints [env CAUSALKV_CLIENT_TOKEN]"
        ),
    ] = None,
    causal_wait_s: Annotated[
        float | None,
        typer.Option(help="Causal wait bound in seconds [env CAUSALKV_CAUSAL_WAIT_S; default 20]"),
    ] = None,
    unsafe_async_commit: Annotated[
        bool,
        typer.Option(
            help="UNSAFE: acknowledge writes before they are on disk [env CAUSALKV_UNSAFE_ASYNC_COMMIT]"
        ),
    ] = False,
    mode: Annotated[
        str | None, typer.Option(help="auto, or synckv (requires ADDRESS) [env CAUSALKV_MODE]")
    ] = None,
    test_hooks: Annotated[
        bool,
        typer.Option(help="Serve /debug fault hooks; for tests only [env CAUSALKV_TEST_HOOKS]"),
    ] = False,
    tls_certificate: Annotated[
        Path | None,
        typer.Option(
            help="PEM certificate: serve HTTPS and talk HTTPS to peers [env CAUSALKV_TLS_CERTIFICATE]"
        ),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option(help="PEM private key of the certificate [env CAUSALKV_TLS_KEY]"),
    ] = None,
    tls_ca: Annotated[
        Path | None,
        typer.Option(help="CA bundle to verify peers' certificates [env CAUSALKV_TLS_CA]"),
    ] = None,
    concurrent_requests_max: Annotated[
        int | None,
        typer.Option(
            help="Requests served at once; more get 503 + Retry-After [env CAUSALKV_CONCURRENT_REQUESTS_MAX; default 1024]"
        ),
    ] = None,
    waiting_requests_max: Annotated[
        int | None,
        typer.Option(
            help="Requests waiting for causal dependencies at once [env CAUSALKV_WAITING_REQUESTS_MAX; default 10000]"
        ),
    ] = None,
    request_body_bytes_max: Annotated[
        int | None,
        typer.Option(
            help="Largest request body [env CAUSALKV_REQUEST_BODY_BYTES_MAX; default 17 MiB]"
        ),
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(help="debug, info, warning or error [env CAUSALKV_LOG_LEVEL]")
    ] = None,
) -> None:
    """Run one causalkv node (serves both HTTP dialects)."""
    flags = {
        "listen": listen,
        "node_id": node_id,
        "advertise": advertise,
        "data_dir": data_dir,
        "storage": storage,
        "cluster_name": cluster_name,
        "cluster_secret": cluster_secret,
        "cluster_secret_file": cluster_secret_file,
        "client_token": client_token,
        "causal_wait_s": causal_wait_s,
        "unsafe_async_commit": unsafe_async_commit or None,
        "mode": mode,
        "log_level": log_level,
        "test_hooks": test_hooks or None,
        "tls_certificate": tls_certificate,
        "tls_key": tls_key,
        "tls_ca": tls_ca,
        "concurrent_requests_max": concurrent_requests_max,
        "waiting_requests_max": waiting_requests_max,
        "request_body_bytes_max": request_body_bytes_max,
    }
    try:
        settings = load_settings(flags)
    except SettingsError as error:
        _fail(str(error))
        return
    sys.exit(run_node(settings))


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
