"""``nano-vision receive``: the server side of the clip upload (``nano-vision-upload/1``).

Binds 127.0.0.1 unless ``--host`` says otherwise. The token comes from ``--token-file`` or the
environment variable ``NANO_VISION_UPLOAD_TOKEN`` (``--token`` works but shows in ``ps``).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

ENV_TOKEN = "NANO_VISION_UPLOAD_TOKEN"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", required=True, help="folder that receives the clips")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9009, help="TCP port (default 9009; 0 = any free port)")
    p.add_argument("--token-file", help=f"file holding the shared token (else ${ENV_TOKEN})")
    p.add_argument("--token", help="the shared token (visible to other users in ps; prefer --token-file)")
    p.add_argument("--max-mb", type=float, default=4096.0, help="largest accepted file in MiB (default 4096)")
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="idle seconds in the body before a connection is dropped (its data is kept; default 60)",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=16,
        help="authenticated uploads received at once; more are refused 'busy' (default 16)",
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        help="seconds from connect to a complete header (TLS handshake included; default 10)",
    )
    p.add_argument(
        "--max-pending",
        type=int,
        default=64,
        help="unauthenticated connections held at once; a new one pushes out the oldest (default 64)",
    )
    p.add_argument("--max-per-address", type=int, default=8, help="connections from one source address (default 8)")
    p.add_argument(
        "--min-rate",
        type=float,
        default=1024.0,
        help="slowest accepted body, bytes/s over --rate-window; slower is cut, data kept (default 1024; 0 = off)",
    )
    p.add_argument(
        "--rate-window", type=float, default=30.0, help="seconds over which --min-rate is measured (default 30)"
    )
    p.add_argument("--tls-cert", help="PEM certificate: serve over TLS")
    p.add_argument("--tls-key", help="PEM private key for --tls-cert")
    p.add_argument(
        "--status-port",
        type=int,
        default=None,
        help="serve upload progress (JSON, GET /status with the token as Bearer) on this port "
        "(default off; 0 = any free port)",
    )
    p.add_argument("--status-host", default=None, help="address of the status endpoint (default: --host)")
    p.add_argument("-v", "--verbose", action="store_true")


def run(args: argparse.Namespace) -> int:
    from nano_vision_ros.core.upload.server import Receiver, ReceiverOptions

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s [%(levelname)s] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    token = args.token
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as err:
            print(f"nano-vision receive: cannot read --token-file: {err}", file=sys.stderr)
            return 2
    token = token or os.environ.get(ENV_TOKEN, "")
    if not token:
        print(f"nano-vision receive: no token (give --token-file or set {ENV_TOKEN})", file=sys.stderr)
        return 2
    try:
        rx = Receiver(
            ReceiverOptions(
                root=args.dir,
                token=token,
                host=args.host,
                port=args.port,
                max_bytes=int(args.max_mb * 1024 * 1024),
                timeout=args.timeout,
                max_connections=args.max_connections,
                header_timeout=args.header_timeout,
                max_pending=args.max_pending,
                max_per_address=args.max_per_address,
                min_rate=args.min_rate,
                rate_window=args.rate_window,
                tls_cert=args.tls_cert,
                tls_key=args.tls_key,
                status_port=args.status_port,
                status_host=args.status_host,
            )
        )
        rx.start()
    except (OSError, ValueError) as err:
        print(f"nano-vision receive: cannot start: {err}", file=sys.stderr)
        return 1
    print(f"receiving on {args.host}:{rx.port} into {rx.root}", flush=True)
    if rx.status is not None:
        print(f"upload progress: http://{args.status_host or args.host}:{rx.status.port}/status", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    rx.stop()
    return 0
