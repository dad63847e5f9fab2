"""The parent process of ``recorder run``: discover, plan, spawn, watch, restart, stop.

1. **Discover** the universe from the ``instrument`` channel (all online pairs, filtered by the
   include/exclude patterns and by ``--shard K/N``), retrying with backoff while the venue is
   unreachable and saying so plainly (``make run`` offline never crashes).
2. **Plan** connections and worker processes (:func:`recorder.capture.shards.plan`) using the
   message rates measured by the previous run when present (``<root>/_capture/rates.json``
   of this host's writer roots), then say in one block what this run records (venue URLs,
   pairs, channels and depths, archive path, expected disk and CPU:
   :mod:`recorder.capture.startup`).
3. **Spawn** one process per worker (``spawn`` start method) and serve ``/metrics``,
   ``/health`` and ``/status`` on loopback from the workers' status reports.
4. **Watch**: a worker that exits while we are not stopping (crash, kill -9) is restarted after
   a backoff on the same archive root ``<archive_root>/<host>-w<k>``; the new run re-derives
   the journal tail the crash left uncommitted and journals a ``ProcessStart``, which the
   pipeline turns into a ``gaps`` row with cause ``process_restart``. A worker that fails
   ``crash_loop_failures`` times in a row with the same error (:class:`FailureStreak`; the
   worker sends its error text on a pipe before it exits) is not restarted again: every worker
   is stopped and ``recorder run`` exits with :data:`EXIT_CRASH_LOOP` and the error, so systemd
   and the alerts see it instead of a recorder that restarts forever and records nothing.
5. **Stop** on SIGTERM/SIGINT: forward SIGTERM, wait up to ``drain_timeout_s`` for workers to
   flush and seal, kill stragglers, exit 0. A second signal forwards SIGINT a second time
   (workers then make their journals durable and exit without the final commit, which the
   next start re-derives) and waits at most :data:`_HURRY_S` for them.

While it runs, the status board (:mod:`recorder.capture.metrics`) carries the supervisor's
own facts for ``/health`` and ``recorder status``: the venue error and next retry while the
pair list cannot be read, and each worker's last exit (error, next restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import queue
import random
import signal
import socket
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import msgspec
import websockets
from aiohttp import web

from recorder.capture.config import CaptureConfig, select_symbols
from recorder.capture.limits import Backoff
from recorder.capture.metrics import StatusBoard, make_app
from recorder.capture.scheduler import rates_path
from recorder.capture.service import EXIT_ARCHIVE_BUSY, WorkerSpec, worker_main
from recorder.capture.shards import WorkerPlan, channel_owners, host_symbols, load_rates, plan
from recorder.capture.startup import describe_plan
from recorder.capture.writer import writer_id
from recorder.errors import RecorderError
from recorder.protocol.spot import InstrumentMessage, decode_spot

__all__ = ["Supervisor", "PairInfo", "discover_pairs", "VenueUnreachable", "level3_notice",
           "FailureStreak", "failure_signature", "EXIT_CRASH_LOOP"]

log = logging.getLogger("recorder.capture.supervisor")

#: Seconds the supervisor waits for its workers after a second stop signal (they make their
#: journals durable and exit without a final commit) before it kills them.
_HURRY_S: Final = 5.0
#: Exit status of ``recorder run`` when a worker failed the same way at every start.
EXIT_CRASH_LOOP: Final = 4


def failure_signature(exitcode: int | None, error: str) -> str | None:
    """What makes two worker failures "the same": the error the worker reported, else its
    exit code. ``None`` for a death by a signal (kill -9, OOM kill): something outside the
    worker ended it, which says nothing about its next start."""
    if exitcode is not None and exitcode < 0:
        return None
    return error or f"exit code {exitcode}"


@dataclass(slots=True)
class FailureStreak:
    """Consecutive identical failures of one worker (pure). :meth:`record` is True once the
    last ``limit`` failures had the same signature and all happened within ``window_s`` of
    the first of them; a different failure, or a death by a signal, starts over."""

    limit: int
    window_s: float
    signature: str | None = None
    times: list[float] = field(default_factory=list)

    def record(self, signature: str | None, now: float) -> bool:
        if signature is None or signature != self.signature:
            self.signature, self.times = signature, []
        if signature is None or self.limit <= 0:
            return False
        self.times = [t for t in self.times if now - t <= self.window_s] + [now]
        return len(self.times) >= self.limit


@dataclass(frozen=True, slots=True)
class PairInfo:
    """One pair of the discovered universe (planning input)."""

    symbol: str
    status: str
    price_precision: int
    qty_precision: int


class VenueUnreachable(RecorderError, ConnectionError):
    """The instrument channel could not be read (network down, venue refusing); ``url`` is
    the address that failed."""

    def __init__(self, message: str, url: str = "") -> None:
        super().__init__(message)
        self.url = url


async def discover_pairs(url: str, timeout_s: float = 15.0) -> list[PairInfo]:
    """All pairs (any status) from one ``instrument`` snapshot on ``url``."""
    try:
        async with asyncio.timeout(timeout_s):
            async with websockets.connect(url, max_size=64 * 1024 * 1024, compression=None) as ws:
                await ws.send(msgspec.json.encode(
                    {"method": "subscribe", "params": {"channel": "instrument"}}).decode())
                while True:
                    ev = decode_spot(await ws.recv(decode=False))
                    if isinstance(ev, InstrumentMessage) and ev.type == "snapshot":
                        return [PairInfo(p.symbol, p.status, p.price_precision, p.qty_precision)
                                for p in ev.data.pairs]
    except (OSError, TimeoutError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as exc:
        raise VenueUnreachable(f"{type(exc).__name__}: {exc}"[:200], url) from None


async def discover_futures(base: str, timeout_s: float = 15.0) -> list[str]:
    """Tradeable futures product ids from REST ``instruments``."""
    import aiohttp

    from recorder.protocol.rest import FuturesInstruments, decode_futures_instruments

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as s:
            async with s.get(base.rstrip("/") + "/derivatives/api/v3/instruments") as r:
                body = await r.read()
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
        raise VenueUnreachable(f"futures instruments: {type(exc).__name__}: {exc}"[:200],
                               base) from None
    got = decode_futures_instruments(body)
    if not isinstance(got, FuturesInstruments):
        raise VenueUnreachable("futures instruments: unexpected answer", base)
    return sorted(i.symbol.upper() for i in got.instruments
                  if getattr(i, "tradeable", True) and i.symbol.upper().startswith(("PF_", "PI_", "FI_", "FF_")))


def level3_notice(cfg: CaptureConfig) -> str | None:
    """Why level3 will not be captured this run (it needs API keys for its WebSocket token),
    or ``None`` when it will be or was not asked for. Decided from the configuration alone, so
    it is said at startup, before any connection."""
    if cfg.channels.level3 and not cfg.credentials:
        return ("level3 needs API keys (KRAKEN_API_KEY/KRAKEN_API_SECRET or a credentials "
                "file): level3 disabled for this run")
    return None


class Supervisor:
    """See module docstring."""

    def __init__(self, cfg: CaptureConfig) -> None:
        self.cfg = cfg
        n = cfg.connection.workers or max(1, os.cpu_count() or 1)
        self.workers = n
        self.board = StatusBoard(n)
        self.stopping = asyncio.Event()
        self._signals = 0
        #: set by a second stop signal: workers were told to exit now, wait only briefly
        self._hurry = asyncio.Event()
        self._ctx = mp.get_context("spawn")
        self._queue: Any = self._ctx.Queue()
        self._procs: dict[int, Any] = {}
        #: worker -> read end of the pipe its current process reports its failure on
        self._failure_pipes: dict[int, Any] = {}
        self._specs: dict[int, WorkerSpec] = {}
        self.run_id = uuid.uuid4().hex[:12]
        self.exit_code = 0
        #: why the supervisor stops on its own (a worker failing at every start), else ""
        self._stop_reason = ""

    def on_signal(self) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info("stop requested: draining workers (up to %.0fs)", self.cfg.drain_timeout_s)
            self.stopping.set()
            self._forward(signal.SIGTERM)
        else:
            log.warning("second stop signal: workers flush and exit now")
            self._forward(signal.SIGINT)
            self._hurry.set()

    def _forward(self, sig: int) -> None:
        for p in self._procs.values():
            if p.is_alive():
                with contextlib.suppress(OSError):
                    os.kill(p.pid, sig)

    async def _discover(self) -> tuple[list[PairInfo], list[str]]:
        backoff = Backoff(2.0, 60.0, random.Random())
        ch = self.cfg.channels
        self.board.phase = "discovering"
        log.info("reading the pair list from %s (archive %s)", self.cfg.venue.spot_ws,
                 Path(self.cfg.archive_root).absolute())
        while not self.stopping.is_set():
            try:
                pairs = await discover_pairs(self.cfg.venue.spot_ws, self.cfg.connection.connect_timeout_s)
                products = list(ch.futures_products)
                if products == ["*"]:
                    products = await discover_futures(self.cfg.venue.futures_rest)
                self.board.venue = {}
                return pairs, products
            except VenueUnreachable as exc:
                delay = backoff.next_delay()
                url = exc.url or self.cfg.venue.spot_ws
                self.board.venue = {"url": url, "error": str(exc), "attempt": backoff.failures,
                                    "retry_at": time.time() + delay}
                log.warning("cannot reach Kraken at %s (%s); retrying in %.0fs — capture starts "
                            "as soon as the venue is reachable", url, exc, delay)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)
        return [], []

    def _plan(self, pairs: list[PairInfo], products: list[str]) -> list[WorkerPlan]:
        ch, conn = self.cfg.channels, self.cfg.connection
        online = [p.symbol for p in pairs if p.status == "online"]
        chosen = select_symbols(online, ch.include, ch.exclude)
        k, n = self.cfg.shard_index
        mine = host_symbols(chosen, k, n)
        prods = host_symbols(products, k, n)
        rates: dict[str, dict[str, float]] = {}
        prefix = writer_id(self.cfg.host or socket.gethostname(), 0)[:-1]  # "<host>-w"
        for f in sorted(rates_path(r) for r in Path(self.cfg.archive_root).glob(f"{prefix}*")):
            for channel, table in load_rates(f).items():
                rates.setdefault(channel, {}).update(table)
        plans = plan(mine, workers=self.workers,
                     level3_depth=ch.level3_depth if ch.level3 and self.cfg.credentials else None,
                     book_depth=ch.book_depth if ch.book else None, trade=ch.trade,
                     ohlc_interval=ch.ohlc_interval if ch.ohlc else None,
                     futures_products=prods, futures_feeds=ch.futures_feeds, rates=rates,
                     max_rate=conn.max_msgs_per_connection,
                     max_symbols=conn.max_symbols_per_connection,
                     l3_max_symbols=conn.l3_symbols_per_connection)
        notice = level3_notice(self.cfg)  # said at startup; the block repeats why level3 is off
        log.info("%s", describe_plan(self.cfg, plans, online=len(online), pairs=mine,
                                     products=prods, host=self.cfg.host or socket.gethostname(),
                                     measured_rates=bool(rates),
                                     level3_off="needs API keys: KRAKEN_API_KEY/KRAKEN_API_SECRET "
                                                "or a credentials file" if notice else None))
        return plans

    def _spawn(self, index: int, restart: int = 0) -> None:
        spec = self._specs[index]
        if restart:
            spec = replace(spec, restart=restart)
            self._specs[index] = spec
        failures_in, failures_out = self._ctx.Pipe(duplex=False)
        p = self._ctx.Process(target=worker_main, args=(spec, self._queue, failures_out),
                              name=f"recorder-w{index}", daemon=False)
        p.start()
        failures_out.close()  # the worker holds the write end
        old = self._failure_pipes.pop(index, None)
        if old is not None:
            old.close()
        self._failure_pipes[index] = failures_in
        self._procs[index] = p
        self.board.pids[index] = p.pid
        log.info("worker %d started (pid %d%s)", index, p.pid, f", restart {restart}" if restart else "")

    async def _drain_status(self) -> None:
        while True:
            for _ in range(1000):
                try:
                    st = self._queue.get_nowait()
                except (queue.Empty, OSError, ValueError):
                    break
                self.board.update(st)
            await asyncio.sleep(0.2)

    def _failure_of(self, index: int) -> str:
        """The error text worker ``index``'s process sent before it exited ("" if none)."""
        pipe = self._failure_pipes.get(index)
        try:
            if pipe is not None and pipe.poll():
                return str(pipe.recv())
        except (EOFError, OSError):
            pass
        return ""

    def _give_up(self, index: int, error: str, failures: int) -> None:
        """A worker failed the same way at every start: stop everything, exit non-zero."""
        self._stop_reason = f"worker {index} failed {failures} times in a row, each time with: {error}"
        self.board.fatal = (f"{self._stop_reason}; the recorder stops (exit status "
                            f"{EXIT_CRASH_LOOP}): fix the cause, then start it again")
        log.error("%s; not restarting it: stopping every worker", self._stop_reason)
        self.exit_code = EXIT_CRASH_LOOP
        self.board.phase = "stopping"
        self.stopping.set()
        self._forward(signal.SIGTERM)

    async def _watch(self) -> None:
        backoffs = {i: Backoff(1.0, 30.0) for i in self._procs}
        started = {i: time.monotonic() for i in self._procs}
        streaks = {i: FailureStreak(self.cfg.crash_loop_failures, self.cfg.crash_loop_window_s)
                   for i in self._procs}
        while not self.stopping.is_set():
            await asyncio.sleep(0.5)
            for i, p in list(self._procs.items()):
                if p.is_alive() or self.stopping.is_set():
                    continue
                error = self._failure_of(i)
                if streaks[i].record(failure_signature(p.exitcode, error), time.monotonic()):
                    self._give_up(i, error or f"exit code {p.exitcode}", len(streaks[i].times))
                    return
                if time.monotonic() - started[i] > 60:
                    backoffs[i].reset()
                delay = backoffs[i].next_delay()
                if p.exitcode == EXIT_ARCHIVE_BUSY:
                    log.error("worker %d: its archive root is held by another process (another "
                              "recorder with the same host name?); retrying in %.1fs", i, delay)
                log.error("worker %d (pid %s) exited with code %s%s; restarting in %.1fs",
                          i, p.pid, p.exitcode, f" ({error})" if error else "", delay)
                self.board.restarts[i] = self.board.restarts.get(i, 0) + 1
                self.board.exits[i] = {"pid": p.pid, "code": p.exitcode, "error": error,
                                       "restart": self.board.restarts[i],
                                       "restart_at": time.time() + delay}
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)
                if self.stopping.is_set():
                    break
                self._spawn(i, restart=self.board.restarts[i])
                started[i] = time.monotonic()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.on_signal)
        obs = self.cfg.observability
        runner = web.AppRunner(make_app(self.board), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, obs.metrics_host, obs.metrics_port)
        try:
            await site.start()
            log.info("metrics and health on http://%s:%d/ (metrics, health, status)",
                     obs.metrics_host, obs.metrics_port)
        except OSError as exc:
            log.error("cannot serve metrics on %s:%d (%s); continuing without",
                      obs.metrics_host, obs.metrics_port, exc.strerror or exc)
        notice = level3_notice(self.cfg)
        if notice:  # before any connection: an operator who is offline sees it too
            log.warning("%s", notice)
        drain = asyncio.ensure_future(self._drain_status())
        try:
            pairs, products = await self._discover()
            if self.stopping.is_set():
                return 0
            plans = self._plan(pairs, products)
            planned = frozenset(s for wp in plans for c in wp.connections
                                if c.stream != "futures" for s in c.symbols)
            owners = channel_owners(plans)
            self.board.phase = "running"
            for wp in plans:
                self._specs[wp.index] = WorkerSpec(self.cfg, wp, self.workers, self.run_id,
                                                   planned=planned, channel_owners=owners)
                self._spawn(wp.index)
            await self._watch()
            self.board.phase = "stopping"
            await self._stop_workers()
            if self._stop_reason:  # the last line of the log says why the recorder stopped
                log.error("recorder stopped (exit status %d): %s; fix the cause, then start it "
                          "again", self.exit_code, self._stop_reason)
            return self.exit_code
        finally:
            drain.cancel()
            await runner.cleanup()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    async def _stop_workers(self) -> None:
        deadline = time.monotonic() + self.cfg.drain_timeout_s
        while time.monotonic() < deadline and any(p.is_alive() for p in self._procs.values()):
            if self._hurry.is_set():  # a second signal: the workers abandon their final commit
                deadline = min(deadline, time.monotonic() + _HURRY_S)
            await asyncio.sleep(0.1)
        for i, p in self._procs.items():
            if p.is_alive():
                log.error("worker %d did not stop within %.0fs: killing", i, self.cfg.drain_timeout_s)
                p.kill()
                self.exit_code = self.exit_code or 1
            p.join(timeout=2)
        for pipe in self._failure_pipes.values():
            pipe.close()
        self._failure_pipes.clear()
        log.info("all workers stopped")
