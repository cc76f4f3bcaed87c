"""The local API served like Lambda: several worker processes, each one request at a time.

Deployed, API Gateway hands each request to a Lambda container that serves one request at a
time, and many containers run at once; two requests that race really run at the same time. The
local API does the same: one front process listens on the API port (Chalice's own HTTP request
handler, one thread per connection) and hands each request to an idle **worker process**, which
holds the app and answers through ``NotFoundAwareGateway`` (``infra.local.gateway``) exactly as
a single-process ``chalice local`` would. A request waits in the front while every worker is
busy, as a Lambda invocation waits for a container.

- Workers: ``LEDGER_API_WORKERS`` (default: one per core, at least 2).
- A worker that dies (a crash, a kill) is replaced; the request it held answers ``502`` in the
  error envelope, as API Gateway answers a Lambda that failed (``internal_error``); requests it
  did not hold go to other workers. A worker that dies while idle costs no request: a worker
  acknowledges each request it takes, and one that dies before that hands it on.
- A request that takes longer than ``LEDGER_API_TIMEOUT`` seconds (default 60) answers ``504``
  in the same envelope and its worker is replaced, as a Lambda past its timeout.
- Stopping the front (SIGTERM, SIGINT, SIGHUP) stops every worker; a worker whose front
  disappears (its pipe closes) exits by itself.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from chalice.local import (
    ChaliceRequestHandler,
    ForbiddenError,
    InvalidAuthorizerError,
    LocalGatewayException,
    NotAuthorizedError,
    ThreadedHTTPServer,
)

from infra.local.child import stack_id_headers

WORKERS_VARIABLE = "LEDGER_API_WORKERS"
TIMEOUT_VARIABLE = "LEDGER_API_TIMEOUT"
DEFAULT_TIMEOUT_SECONDS = 60.0
READY_TIMEOUT_SECONDS = 60.0
WATCH_SECONDS = 0.5
# API Gateway's answer when the integration fails (infra/api-gateway-responses.json, DEFAULT_5XX).
INTERNAL_ERROR_MESSAGE = "An internal error occurred. Quote the request_id when reporting it."
GATEWAY_ERRORS: dict[str, type[LocalGatewayException]] = {
    cls.__name__: cls for cls in (ForbiddenError, InvalidAuthorizerError, NotAuthorizedError)
}


def worker_count(environ: dict[str, str] | os._Environ[str]) -> int:
    """``LEDGER_API_WORKERS``, or one per core and at least 2."""
    raw = environ.get(WORKERS_VARIABLE, "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"{WORKERS_VARIABLE}={raw!r} is not a number of workers (1 or more)")
        return int(raw)
    return max(2, os.cpu_count() or 1)


def request_timeout(environ: dict[str, str] | os._Environ[str]) -> float:
    raw = environ.get(TIMEOUT_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        raise ValueError(f"{TIMEOUT_VARIABLE}={raw!r} is not a number of seconds above 0")
    return seconds


# -- the worker process ------------------------------------------------------------------------
def serve_requests(connection: Connection, load_gateway: Any) -> None:
    """A worker's life: load the app, say ready, then answer one request at a time."""
    import signal

    # The front stops the workers; the terminal's Ctrl-C reaches the whole group and must not
    # kill a worker in the middle of a request before the front has stopped taking requests.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gateway = load_gateway()
    connection.send(("ready", os.getpid()))
    while True:
        try:
            request = connection.recv()
            connection.send(("taken",))  # from here on, this worker holds the request
        except (EOFError, OSError):
            return  # the front is gone
        try:
            reply: tuple[Any, ...] = ("response", gateway.handle_request(**request))
        except LocalGatewayException as exc:
            reply = ("gateway_error", type(exc).__name__, exc.headers, exc.body)
        connection.send(reply)


# -- the front ---------------------------------------------------------------------------------
@dataclass
class Worker:
    process: Any
    connection: Connection
    pid: int = 0
    replaced: bool = False

    def alive(self) -> bool:
        return bool(self.process.is_alive())

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)


class WorkerDied(Exception):
    """The worker holding the request died before it answered."""


class WorkerTimedOut(Exception):
    """The worker holding the request did not answer within the timeout."""


@dataclass
class WorkerPool:
    """Idle workers in a queue; a request takes one, and gives it back once answered."""

    load_gateway: Any  # picklable, called in each worker: returns the app's local gateway
    size: int
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    idle: queue.Queue[Worker] = field(default_factory=queue.Queue)
    workers: dict[int, Worker] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._context = multiprocessing.get_context("spawn")

    # lifecycle
    def start(self) -> None:
        """Start every worker; return once all are ready (or raise if one cannot start).

        A watcher then replaces any worker that dies, busy or idle.
        """
        starting = [self._spawn() for _ in range(self.size)]
        for worker in starting:
            self._await_ready(worker)
        threading.Thread(target=self._watch, name="api-worker-watch", daemon=True).start()

    def _watch(self) -> None:
        while not self.stopping.wait(WATCH_SECONDS):
            with self.lock:
                dead = [w for w in self.workers.values() if not w.alive()]
            for worker in dead:
                self._replace(worker)

    def stop(self) -> None:
        self.stopping.set()
        with self.lock:
            workers = list(self.workers.values())
            self.workers.clear()
        for worker in workers:
            worker.stop()

    def pids(self) -> list[int]:
        with self.lock:
            return sorted(self.workers)

    def _spawn(self) -> Worker:
        front, back = self._context.Pipe()
        process = self._context.Process(
            target=serve_requests, args=(back, self.load_gateway), name="api-worker", daemon=True
        )
        process.start()
        back.close()  # only the worker holds it: its death closes the pipe for the front
        return Worker(process, front)

    def _await_ready(self, worker: Worker) -> None:
        if not worker.connection.poll(READY_TIMEOUT_SECONDS):
            worker.stop()
            raise RuntimeError(f"an API worker was not ready within {READY_TIMEOUT_SECONDS:.0f} s")
        try:
            _ready, pid = worker.connection.recv()
        except (EOFError, OSError) as exc:
            worker.stop()
            raise RuntimeError(
                f"an API worker exited while loading the app (exit code {worker.process.exitcode})"
            ) from exc
        worker.pid = pid
        with self.lock:
            if self.stopping.is_set():
                worker.stop()
                return
            self.workers[pid] = worker
        self.idle.put(worker)

    def _replace(self, worker: Worker) -> None:
        """Forget a dead or stuck worker and start another in the background (once per worker:
        the watcher and a request may both find it dead)."""
        with self.lock:
            if worker.replaced:
                return
            worker.replaced = True
            self.workers.pop(worker.pid, None)
        worker.stop()
        if self.stopping.is_set():
            return

        def start_another() -> None:
            while not self.stopping.is_set():
                try:
                    self._await_ready(self._spawn())
                    return
                except Exception:  # cannot start one now (no memory, no file descriptors)
                    time.sleep(1)

        threading.Thread(target=start_another, name="api-worker-replace", daemon=True).start()

    # requests
    def _take(self) -> Worker:
        """An idle worker that is alive: one that died while idle is replaced, not used."""
        while True:
            worker = self.idle.get()
            if worker.alive() and not worker.replaced:
                return worker
            self._replace(worker)

    def handle_request(
        self, method: str, path: str, headers: dict[str, Any], body: bytes | None
    ) -> dict[str, Any]:
        request = {"method": method, "path": path, "headers": headers, "body": body}
        while True:
            worker = self._take()
            try:
                worker.connection.send(request)
                if worker.connection.poll(self.timeout) and worker.connection.recv() == ("taken",):
                    break
            except (EOFError, OSError):
                pass
            except Exception:  # the request cannot be handed over (it does not pickle)
                self.idle.put(worker)
                return gateway_failure(502)
            self._replace(worker)  # died before it took the request: another worker takes it
        try:
            reply = self._answer(worker)
        except WorkerDied:
            self._replace(worker)
            return gateway_failure(502)
        except WorkerTimedOut:
            self._replace(worker)
            return gateway_failure(504)
        self.idle.put(worker)
        if reply[0] == "gateway_error":
            _, name, error_headers, error_body = reply
            raise GATEWAY_ERRORS.get(name, InvalidAuthorizerError)(error_headers, error_body)
        return reply[1]

    def _answer(self, worker: Worker) -> tuple[Any, ...]:
        try:
            answered = worker.connection.poll(self.timeout)
        except (EOFError, OSError) as exc:
            raise WorkerDied from exc
        if not answered:
            raise WorkerTimedOut
        try:
            return worker.connection.recv()
        except Exception as exc:  # gone, or an answer that does not unpickle: not trusted
            raise WorkerDied from exc


def gateway_failure(status: int) -> dict[str, Any]:
    """What API Gateway answers when its Lambda fails or times out, in the error envelope."""
    from chalicelib.api import errors, middleware
    from chalicelib.api.log import logger

    request_id = str(uuid.uuid4())
    logger.error("API worker failed", status=status, request_id=request_id)
    response = errors.error_response(status, "internal_error", INTERNAL_ERROR_MESSAGE, request_id)
    return middleware.with_boundary_headers(response, request_id).to_dict()


class PoolRequestHandler(ChaliceRequestHandler):
    """Chalice's local request handler, with the pool in the place of its gateway."""

    def __init__(self, request: Any, client_address: Any, server: Any, pool: WorkerPool) -> None:
        from http.server import BaseHTTPRequestHandler

        self.local_gateway = pool  # type: ignore[assignment]
        BaseHTTPRequestHandler.__init__(self, request, client_address, server)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the app's middleware logs every request as structured JSON instead."""

    def end_headers(self) -> None:
        for name, value in stack_id_headers():  # which stack answers (infra.local.child)
            self.send_header(name, value)
        super().end_headers()

    def __getattr__(self, name: str) -> Any:
        """Every method goes to the app, not only the seven Chalice's server knows: TRACE,
        CONNECT or any other token answer ``405 method_not_allowed`` in the error envelope (an
        unknown path ``404``), as API.md says, instead of the stdlib's ``501`` HTML page."""
        if name.startswith("do_"):
            return self._generic_handle
        raise AttributeError(name)


class FrontServer(ThreadedHTTPServer):
    """Chalice's threaded dev server with a listen backlog for bursts of parallel clients
    (``HTTPServer``'s default of 5 refuses a burst of twenty connections)."""

    request_queue_size = 256


def create_server(pool: WorkerPool, host: str, port: int) -> FrontServer:
    handler = functools.partial(PoolRequestHandler, pool=pool)
    return FrontServer((host, port), handler)
