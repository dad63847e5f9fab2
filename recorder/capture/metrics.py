"""Prometheus metrics and ``/health`` for the whole process tree, served by the supervisor.

Workers push a status dict every second (see :meth:`recorder.capture.service.Worker.status`);
:class:`StatusBoard` keeps the latest per worker, :class:`BoardCollector` renders it as
Prometheus metric families (``shard`` = worker index; among them the event loop's stalls,
``recorder_event_loop_lag_seconds``), and :func:`make_app` serves
``/metrics``, ``/health`` (200 when every subscription is alive, 503 otherwise, JSON body with
the reasons) and ``/status`` (the full JSON the ``recorder status`` table is built from).

The reasons say why something is not recorded, in words an operator can act on: the venue
unreachable while the pair list is read (the DNS or connect error and the next retry), a
connection down (its error, e.g. refused or an API key refused for level3, and the next
retry), a worker that exited (its error and its restart), capture paused (disk nearly full,
archive writes failing), quarantined pairs (until when), and a worker that failed the same
way at every start (the recorder then stops).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

__all__ = ["StatusBoard", "BoardCollector", "make_app", "health"]


class StatusBoard:
    """Latest status per worker plus supervisor facts (restarts, stale workers)."""

    def __init__(self, workers: int, stale_after_s: float = 10.0) -> None:
        self.workers = workers
        self.latest: dict[int, dict[str, Any]] = {}
        self.restarts: dict[int, int] = {i: 0 for i in range(workers)}
        self.stale_after_s = stale_after_s
        self.started = time.time()
        self._rates: dict[int, tuple[float, int, int, float, float]] = {}
        #: ``discovering`` (reading the venue's pair list), ``running``, ``stopping``
        self.phase = "starting"
        #: while the pair list cannot be read: ``url``, ``error``, ``retry_at`` (wall s),
        #: ``attempt``; empty otherwise
        self.venue: dict[str, Any] = {}
        #: worker -> pid of its current process
        self.pids: dict[int, int] = {}
        #: worker -> its last exit until its next process reports: ``pid``, ``code``,
        #: ``error``, ``restart`` (number), ``restart_at`` (wall s, None when not restarted)
        self.exits: dict[int, dict[str, Any]] = {}
        #: why the supervisor stops on its own (a worker failing at every start), else ""
        self.fatal = ""

    def update(self, status: dict[str, Any]) -> None:
        w = int(status.get("worker", -1))
        ex = self.exits.get(w)
        if ex is not None and status.get("pid") != ex["pid"]:
            del self.exits[w]  # the restarted process reports
        prev = self.latest.get(w)
        if prev is not None:
            dt = status["time"] - prev["time"]
            if dt > 0:
                mps = max(0, status["frames_in"] - prev["frames_in"]) / dt
                bps = max(0, status["bytes_in"] - prev["bytes_in"]) / dt
                self._rates[w] = (status["time"], status["frames_in"], status["bytes_in"], mps, bps)
        self.latest[w] = status

    def rate(self, w: int) -> tuple[float, float]:
        r = self._rates.get(w)
        return (r[3], r[4]) if r else (0.0, 0.0)


def when(at: float | None, now: float) -> str:
    """``at 12:00:05Z (in 3s)`` for a wall time ``at`` (``now`` when it is past or None)."""
    if at is None or at <= now:
        return "now"
    stamp = datetime.fromtimestamp(at, UTC).strftime("%H:%M:%SZ")
    return f"at {stamp} (in {at - now:.0f}s)"


def _connections_down(w: int, conns: list[dict[str, Any]], now: float) -> list[str]:
    """One line per (URL, error) of the connections of worker ``w`` that are down after a
    failed attempt, with the soonest retry."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in conns:
        if not c["connected"] and c.get("last_error"):
            groups.setdefault((c.get("url", ""), c["last_error"]), []).append(c)
    lines = []
    for (url, error), cs in groups.items():
        retries = [c["retry_at"] for c in cs if c.get("retry_at") is not None]
        attempts = max(int(c.get("attempts") or 0) for c in cs)
        names = ", ".join(c["name"] for c in cs)
        lines.append(f"worker {w} {names}: not connected to {url}: {error}; next retry "
                     f"{when(min(retries) if retries else None, now)} (attempt {attempts + 1})")
    return lines


def health(board: StatusBoard, now: float | None = None) -> tuple[bool, dict[str, Any]]:
    """(healthy, report). Unhealthy when the venue's pair list cannot be read, a worker is
    missing, exited or stale, capture is paused, a connection is down, a pair is quarantined
    or any subscription of a worker is dead (see :meth:`SubscriptionTable.dead`); each
    problem says why (see module docstring)."""
    now = time.time() if now is None else now
    problems: list[str] = []
    if board.fatal:
        problems.append(board.fatal)
    if board.venue:
        v = board.venue
        problems.append(f"venue unreachable: cannot read the pair list from {v['url']}: "
                        f"{v['error']}; nothing is recorded until it answers; next retry "
                        f"{when(v.get('retry_at'), now)} (attempt {v.get('attempt', 1) + 1})")
    elif board.phase == "discovering" and now - board.started > board.stale_after_s:
        problems.append(f"reading the pair list from the venue for {now - board.started:.0f}s")
    shards = []
    for w in range(board.workers):
        st = board.latest.get(w)
        ex = board.exits.get(w)
        if ex is not None:
            restart = (f"restart {ex['restart']} {when(ex.get('restart_at'), now)}"
                       if ex.get("restart_at") is not None else "not restarted")
            error = f" ({ex['error']})" if ex.get("error") else ""
            problems.append(f"worker {w}: exited with code {ex['code']}{error}; {restart}")
            shards.append({"worker": w, "pid": ex["pid"], "state": "exited",
                           "restarts": board.restarts.get(w, 0), "exit": ex})
            continue
        if st is None:
            state = "starting"
            if board.phase in ("starting", "discovering"):
                state = "waiting for the pair list"  # the venue problem above says why
            elif now - board.started > board.stale_after_s:
                problems.append(f"worker {w}: started, no status yet (opening its archive root)")
            shards.append({"worker": w, "state": state})
            continue
        if now - st["time"] > board.stale_after_s:
            problems.append(f"worker {w}: status stale for {now - st['time']:.0f}s")
        if st.get("paused"):
            problems.append(f"worker {w}: paused, nothing recorded: "
                            f"{st.get('pause_reason') or 'disk pressure'}")
        else:
            problems.extend(_connections_down(w, st["connections"], now))
        dead = {c["name"]: c["dead"] for c in st["connections"] if c["dead"]}
        for name, syms in dead.items():
            problems.append(f"worker {w} {name}: {len(syms)} dead: {', '.join(syms[:5])}")
        quarantine = st.get("quarantine") or []
        if quarantine:
            listed = ", ".join(f"{q['key']} {when(q['until'], now).replace('at ', 'until ', 1)}"
                               + (f" ({q['reason']})" if q.get("reason") else "")
                               for q in quarantine[:5])
            more = f", ... ({len(quarantine) - 5} more)" if len(quarantine) > 5 else ""
            problems.append(f"worker {w}: {len(quarantine)} quarantined after repeated "
                            f"desyncs, not recorded until released: {listed}{more}")
        mps, _ = board.rate(w)
        shards.append({
            "worker": w, "pid": st["pid"], "state": "paused" if st.get("paused") else "running",
            "msgs_per_s": round(mps, 1), "restarts": board.restarts.get(w, 0),
            "pause_reason": st.get("pause_reason", ""),
            "connections": [{k: c.get(k) for k in ("name", "channel", "connected", "symbols",
                                                   "states", "dead", "messages", "last_error",
                                                   "url", "retry_at", "attempts")}
                            for c in st["connections"]],
            "quarantined": st["quarantined"], "quarantine": quarantine,
            "checksum_failures": st["checksum_failures"], "resyncs": st["resyncs"],
            "loop_lag_max_s": st.get("loop_lag_max_s"),
        })
    report = {"healthy": not problems, "phase": board.phase, "problems": problems,
              "shards": shards}
    return (not problems, report)


class BoardCollector(Collector):
    """Renders the board as metric families at scrape time."""

    def __init__(self, board: StatusBoard) -> None:
        self.board = board

    def collect(self) -> Iterator[Any]:
        b = self.board
        lab = ["shard"]
        fams: dict[str, Any] = {
            "msgs": CounterMetricFamily("recorder_messages", "Frames received", labels=lab),
            "bytes": CounterMetricFamily("recorder_received_bytes", "Bytes received", labels=lab),
            "mps": GaugeMetricFamily("recorder_messages_per_second", "Receive rate", labels=lab),
            "bps": GaugeMetricFamily("recorder_bytes_per_second", "Receive byte rate", labels=lab),
            "lagx": GaugeMetricFamily("recorder_lag_exchange_to_receive_seconds",
                                      "Exchange timestamp to local receive (latest)", labels=lab),
            "lagd": GaugeMetricFamily("recorder_lag_receive_to_disk_seconds",
                                      "Local receive to journal flush (latest)", labels=lab),
            "rq": GaugeMetricFamily("recorder_queue_depth", "Queued work", labels=["shard", "queue"]),
            "ck": CounterMetricFamily("recorder_checksums_verified", "Verified checksums", labels=lab),
            "cf": CounterMetricFamily("recorder_checksum_failures", "Checksum mismatches", labels=lab),
            "rs": CounterMetricFamily("recorder_resyncs", "Resnapshots requested", labels=lab),
            "tg": CounterMetricFamily("recorder_trade_gaps", "Trade-id gaps detected", labels=lab),
            "bf": CounterMetricFamily("recorder_backfilled_trades", "Trades backfilled over REST",
                                      labels=lab),
            "q": GaugeMetricFamily("recorder_quarantined_pairs", "Quarantined subscriptions", labels=lab),
            "bu": GaugeMetricFamily("recorder_subscription_budget_use",
                                    "Budget utilisation 0..1", labels=["shard", "budget"]),
            "cn": GaugeMetricFamily("recorder_connections_up", "Connected sockets", labels=lab),
            "dead": GaugeMetricFamily("recorder_dead_subscriptions", "Dead subscriptions", labels=lab),
            "h": GaugeMetricFamily("recorder_shard_healthy", "1 when the shard is healthy", labels=lab),
            "rl": CounterMetricFamily("recorder_rest_rate_limited", "REST rate-limit answers", labels=lab),
            "rst": CounterMetricFamily("recorder_worker_restarts", "Worker restarts", labels=lab),
            "ll": HistogramMetricFamily("recorder_event_loop_lag_seconds",
                                        "How late the worker's event loop ran a 10 ms timer "
                                        "(a stall: commits run off the loop)", labels=lab),
            "llmax": GaugeMetricFamily("recorder_event_loop_lag_max_seconds",
                                       "Longest event-loop stall in the last status interval",
                                       labels=lab),
            "llcpu": GaugeMetricFamily("recorder_event_loop_own_stall_max_seconds",
                                       "Longest event-loop stall in the last status interval "
                                       "counted at most as the loop thread's CPU time over it "
                                       "(the loop's own work; other processes do not add to "
                                       "it)", labels=lab),
            "cut": GaugeMetricFamily("recorder_commit_cut_cpu_seconds_max",
                                     "Longest loop-thread CPU time of a commit's cut (the rest "
                                     "of a commit runs in its thread)", labels=lab),
        }
        now = time.time()
        for w in range(b.workers):
            s = str(w)
            fams["rst"].add_metric([s], b.restarts.get(w, 0))
            st = b.latest.get(w)
            if st is None:
                fams["h"].add_metric([s], 0)
                continue
            mps, bps = b.rate(w)
            fams["msgs"].add_metric([s], st["frames_in"])
            fams["bytes"].add_metric([s], st["bytes_in"])
            fams["mps"].add_metric([s], mps)
            fams["bps"].add_metric([s], bps)
            fams["lagx"].add_metric([s], st["lag_exchange_receive_s"])
            fams["lagd"].add_metric([s], st["lag_receive_disk_s"])
            fams["rq"].add_metric([s, "heal"], st["heal_pending"])
            fams["rq"].add_metric([s, "rest"], st["rest_queue"])
            fams["ck"].add_metric([s], st["checksums_ok"])
            fams["cf"].add_metric([s], st["checksum_failures"])
            fams["rs"].add_metric([s], st["resyncs"])
            fams["tg"].add_metric([s], st["trade_gaps"])
            fams["bf"].add_metric([s], st["backfilled_rows"])
            fams["q"].add_metric([s], len(st["quarantined"]))
            fams["bu"].add_metric([s, "level3"], st["l3_budget_use"])
            fams["bu"].add_metric([s, "resnapshot"], st["resnapshot_budget_use"])
            fams["cn"].add_metric([s], sum(1 for c in st["connections"] if c["connected"]))
            dead = sum(len(c["dead"]) for c in st["connections"])
            fams["dead"].add_metric([s], dead)
            fams["h"].add_metric([s], int(dead == 0 and now - st["time"] < b.stale_after_s))
            fams["rl"].add_metric([s], st["rest_rate_limited"])
            if "loop_lag_buckets" in st:
                fams["ll"].add_metric([s], [(str(b), c) for b, c in st["loop_lag_buckets"]],
                                      st["loop_lag_sum_s"])
                fams["llmax"].add_metric([s], st["loop_lag_window_max_s"])
                fams["llcpu"].add_metric([s], st.get("loop_cpu_window_max_s", 0.0))
                fams["cut"].add_metric([s], st.get("commit_cut_cpu_s_max", 0.0))
        yield from fams.values()


def make_app(board: StatusBoard) -> web.Application:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BoardCollector(board))

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def health_view(_: web.Request) -> web.Response:
        ok, report = health(board)
        return web.json_response(report, status=200 if ok else 503)

    async def status_view(_: web.Request) -> web.Response:
        ok, report = health(board)
        return web.json_response({**report, "workers": board.latest})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", health_view)
    app.router.add_get("/status", status_view)
    return app
