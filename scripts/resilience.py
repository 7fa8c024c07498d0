#!/usr/bin/env python3
"""Resilience test: Nest Egg loses nothing when PostgreSQL, Redis, SMTP or the app itself fails.

Run:  python3 scripts/resilience.py            (Python 3.11+, standard library only)

What it does (one run, about 4 minutes; see scripts/resilience.md):

1. Starts an in-process SMTP sink, creates a fresh PostgreSQL database and starts the server binary
   (`$NESTEGG_BIN`, default `$CARGO_TARGET_DIR/debug/nestegg`) against it, with sessions, rate limits
   and lock-outs in Redis under a prefix of its own.
2. Keeps a steady load running the whole time: 4 client threads registering unique accounts, with a
   GET /health/live and a sign-in of an earlier account now and then. Every request is recorded.
3. Injects one fault at a time, with normal load in between, and measures how long until
   /health/ready answers 200 again without any manual step:
     (c) SMTP sink stopped for 60 s (connections refused), then back on the same port;
     (d) `kill -9` of the app in the middle of a burst of registrations, then restarted with the same
         environment (what a supervisor does);
     (a) PostgreSQL stopped for ~5 s, then started;
     (b) Redis shut down (nosave) for ~5 s, then started again (it keeps nothing: sessions are lost
         by design).
   The order is chosen for run time, not importance: a row that failed during the SMTP outage may
   wait up to ~3.5 minutes for its next attempt (backoff 1 min, then 2 min, ±20 %), and a row the
   killed process had claimed stays leased for 120 s; doing these two first lets those timers run
   out while the other phases happen. `--order` changes it.
4. Stops the load and waits (bounded, guided by the outbox's own retry times and its progress) until
   no email is pending.
5. Checks: every acknowledged registration (2xx) is in `users` and has its verification email
   queued; every outbox row was delivered exactly once (by Message-ID, and by recipient+subject);
   the sink got nothing that is not in the table; nothing pending or failed; no 500s; no unexpected
   statuses; connections failed only while the process was dead; every fault recovered within
   RECOVERY_BOUND_S; no passwords in the app log; no panics.
6. Prints a per-phase table and PASS/FAIL per check; exits 0 only if every check passes.
7. Always cleans up (also on failure and Ctrl-C): stops the app, drops the database, deletes the
   Redis keys it made, and makes sure PostgreSQL and Redis are running.
"""

from __future__ import annotations

import argparse
import base64
import collections
import email.parser
import email.policy
import email.utils
import http.client
import json
import os
import random
import secrets
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

# --------------------------------------------------------------------------------------------------
# Settings of the run
# --------------------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
REDIS_PORT = 6379
# The exact command the CI machine starts Redis with: restarting it any other way could change its
# configuration for the tests that share it.
REDIS_START = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", str(REDIS_PORT),
    "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
    "--logfile", "/var/log/redis/ci.log",
]

HTTP_TIMEOUT_S = 10          # every HTTP call is bounded: a hang shows up as a timeout, never a stall
LOAD_THREADS = 4             # steady load
BURST_THREADS = 8            # the registration burst the app is killed in
BURST_S = 3.0                # burst length; the kill lands in its middle
SETTLE_S = 12                # normal load between phases
BASELINE_S = 10
DEPENDENCY_DOWN_S = 5        # PostgreSQL / Redis outage
SMTP_DOWN_S = 60             # SMTP outage
RECOVERY_BOUND_S = 30        # ready again within this long after the dependency is back
DRAIN_MIN_S = 90             # wait at least this long for the outbox to drain after the load stops ...
DRAIN_MAX_S = 240            # ... and longer only while a retry is still due or the backlog shrinks
STARTUP_TIMEOUT_S = 90       # first start runs the migrations
LOG_TAIL_LINES = 50

PHASES = {
    "a": ("postgres", "PostgreSQL restart"),
    "b": ("redis", "Redis restart (nosave)"),
    "c": ("smtp", "SMTP sink down for 60 s"),
    "d": ("kill9", "kill -9 of the app during a registration burst"),
}

T0 = time.monotonic()


def now() -> float:
    """Seconds since the script started (monotonic): every record and event uses this clock."""
    return time.monotonic() - T0


def log(message: str) -> None:
    wall = time.strftime("%H:%M:%S")
    print(f"[{wall} +{now():6.1f}s] {message}", flush=True)


# --------------------------------------------------------------------------------------------------
# Small process helpers
# --------------------------------------------------------------------------------------------------


def run(cmd: list[str], timeout: float = 60, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """Runs a command with a timeout (so the script can never hang on it) and captured output."""
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def pg_version() -> str:
    versions = sorted(os.listdir("/etc/postgresql"))
    if not versions:
        raise RuntimeError("no PostgreSQL cluster under /etc/postgresql")
    return versions[-1]


def pg_ctl(action: str) -> None:
    # `-m fast` is pg_ctlcluster's default for stop, spelled out: a "smart" stop would wait for the
    # app's pooled connections to go away, which they never would.
    extra = ["-m", "fast"] if action in ("stop", "restart") else []
    run(["pg_ctlcluster", "--skip-systemctl-redirect", *extra, pg_version(), "main", action],
        timeout=90, check=False)


def pg_up() -> bool:
    try:
        return run(["pg_isready", "-h", PG_HOST, "-p", str(PG_PORT), "-t", "2"], timeout=10,
                   check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def redis_up() -> bool:
    try:
        return run(["redis-cli", "-p", str(REDIS_PORT), "ping"], timeout=5,
                   check=False).stdout.strip() == "PONG"
    except subprocess.TimeoutExpired:
        return False


def wait_until(predicate, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def start_postgres() -> None:
    if not pg_up():
        pg_ctl("start")
    if not wait_until(pg_up, 60, 0.3):
        raise RuntimeError("PostgreSQL did not come up")


def start_redis() -> None:
    if not redis_up():
        run(REDIS_START, timeout=30, check=False)
    if not wait_until(redis_up, 30, 0.2):
        raise RuntimeError("Redis did not come up")


def ensure_services() -> None:
    """PostgreSQL and Redis must be running when the script exits, whatever happened."""
    for name, up, start in (("PostgreSQL", pg_up, start_postgres), ("Redis", redis_up, start_redis)):
        if up():
            continue
        log(f"{name} is down: starting it")
        try:
            start()
        except Exception as err:  # keep trying the other one
            log(f"!! could not start {name}: {err}")


def psql(db: str, sql: str, timeout: float = 30) -> list[list[str]]:
    """Rows of a query, fields split on the ASCII unit separator (nothing we store contains it)."""
    out = run(["psql", "-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER, "-d", db, "-X", "-q",
               "-v", "ON_ERROR_STOP=1", "-At", "-F", "\x1f", "-c", sql], timeout=timeout).stdout
    return [line.split("\x1f") for line in out.splitlines() if line != ""]


def redis_cli(*args: str, timeout: float = 30) -> str:
    return run(["redis-cli", "-p", str(REDIS_PORT), *args], timeout=timeout).stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------------
# SMTP sink
# --------------------------------------------------------------------------------------------------


class _SmtpSession(socketserver.StreamRequestHandler):
    """One SMTP connection: 220/250/354/221, records each message, and honours `stop()`.

    A stop behaves like a mail server shutting down cleanly: the listener closes (new connections are
    refused), idle connections are cut at once, and a transaction already past MAIL FROM finishes (so
    a message is never both recorded here and reported as failed to the app, which would make a
    duplicate that is the sink's fault, not the app's); its connection closes right after.
    """

    timeout = 120  # a silent client cannot pin a thread forever

    def handle(self) -> None:
        sink: SmtpSink = self.server.sink  # type: ignore[attr-defined]
        self.busy = False
        self.guard = threading.Lock()
        sink.register(self)
        try:
            self._serve(sink)
        except (OSError, ValueError):
            pass  # connection cut (by us on stop, or by the client)
        finally:
            sink.unregister(self)

    def _reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def cut(self) -> None:
        """Called by stop(): closes the connection unless a transaction is in progress."""
        with self.guard:
            if not self.busy:
                try:
                    self.request.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _serve(self, sink: "SmtpSink") -> None:
        self._reply("220 resilience-sink ESMTP")
        rcpts: list[str] = []
        while True:
            raw = self.rfile.readline(65536)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            upper = line.upper()
            if not sink.running and not self.busy:
                self._reply("421 4.3.2 service shutting down")
                return
            if upper.startswith(("EHLO", "HELO")):
                self._reply("250 resilience-sink")
            elif upper.startswith("MAIL FROM"):
                with self.guard:
                    self.busy = True
                rcpts = []
                self._reply("250 OK")
            elif upper.startswith("RCPT TO"):
                rcpts.append(line.split(":", 1)[1].strip().strip("<>").lower())
                self._reply("250 OK")
            elif upper == "DATA":
                self._reply("354 go ahead")
                chunks: list[bytes] = []
                while True:
                    data_line = self.rfile.readline(1 << 20)
                    if not data_line:
                        return  # connection lost mid-message: nothing accepted, the app retries
                    if data_line.rstrip(b"\r\n") == b".":
                        break
                    chunks.append(data_line[1:] if data_line.startswith(b"..") else data_line)
                # Recorded before the 250 goes out, as a real server commits before acknowledging.
                sink.record(b"".join(chunks), rcpts)
                self._reply("250 2.0.0 queued")
                with self.guard:
                    self.busy = False
                if not sink.running:
                    return
            elif upper == "RSET":
                with self.guard:
                    self.busy = False
                self._reply("250 OK")
            elif upper == "NOOP":
                self._reply("250 OK")
            elif upper == "QUIT":
                self._reply("221 bye")
                return
            else:
                self._reply("502 5.5.2 not implemented")


class _SmtpServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True  # reopen on the same port right after a stop
    daemon_threads = True


@dataclass
class SinkMessage:
    t: float
    message_id: str
    to: str
    subject: str
    rcpts: list[str]


class SmtpSink:
    def __init__(self) -> None:
        self.port = free_port()
        self.lock = threading.Lock()
        self.messages: list[SinkMessage] = []
        self.sessions: set[_SmtpSession] = set()
        self.server: _SmtpServer | None = None
        self.running = False
        self.parser = email.parser.BytesParser(policy=email.policy.default)

    def start(self) -> None:
        server = _SmtpServer(("127.0.0.1", self.port), _SmtpSession)
        server.sink = self  # type: ignore[attr-defined]
        self.server = server
        self.running = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                         name="smtp-sink", daemon=True).start()

    def stop(self) -> None:
        self.running = False
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()  # the port now refuses connections
            self.server = None
        with self.lock:
            sessions = list(self.sessions)
        for session in sessions:
            session.cut()

    def register(self, session: _SmtpSession) -> None:
        with self.lock:
            self.sessions.add(session)

    def unregister(self, session: _SmtpSession) -> None:
        with self.lock:
            self.sessions.discard(session)

    def record(self, data: bytes, rcpts: list[str]) -> None:
        headers = self.parser.parsebytes(data, headersonly=True)
        message_id = str(headers.get("Message-ID", "")).strip().strip("<>")
        message_id = message_id.split("@", 1)[0]  # `<{outbox message_id}@nestegg>`
        to = email.utils.parseaddr(str(headers.get("To", "")))[1].lower()
        with self.lock:
            self.messages.append(SinkMessage(now(), message_id, to, str(headers.get("Subject", "")),
                                             rcpts))

    def snapshot(self) -> list[SinkMessage]:
        with self.lock:
            return list(self.messages)


# --------------------------------------------------------------------------------------------------
# HTTP client
# --------------------------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx is an answer to record, not something to follow."""

    def redirect_request(self, *args, **kwargs):
        return None


# No proxies: an http_proxy in the environment must not route 127.0.0.1 traffic elsewhere.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


@dataclass
class Result:
    status: int | None       # None: no HTTP answer
    error: str | None        # connection refused/reset, timeout ...
    body: bytes = b""

    @property
    def timed_out(self) -> bool:
        return self.error is not None and "timeout" in self.error.lower()


class App:
    """The server process: start with the same environment each time, kill -9, SIGTERM."""

    def __init__(self, binary: Path, env: dict[str, str], workdir: Path, port: int) -> None:
        self.binary, self.env, self.workdir, self.port = binary, env, workdir, port
        self.base = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None
        self.logs: list[Path] = []
        self.starts = 0
        self.unexpected_exits: list[str] = []

    def start(self) -> None:
        self.starts += 1
        path = self.workdir / f"app-{self.starts}.log"
        self.logs.append(path)
        with open(path, "ab") as out:
            # cwd = the temp dir (no repo `.env` is read), a clean environment, and a session of its
            # own so a Ctrl-C in this terminal does not reach it (the cleanup stops it properly).
            self.proc = subprocess.Popen([str(self.binary)], cwd=self.workdir, env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        log(f"app started (pid {self.proc.pid}, log {path.name})")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                log("!! app ignored SIGTERM for 40 s: killing it")
                self.proc.kill()
                self.proc.wait(timeout=30)
        return self.proc.returncode

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> Result:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        headers = {"Accept": "application/json"}
        if method == "POST":
            headers.update({
                "Origin": self.base,
                "Sec-Fetch-Site": "same-origin",
                "Content-Type": "application/x-www-form-urlencoded",
            })
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with _OPENER.open(req, timeout=HTTP_TIMEOUT_S) as response:
                return Result(response.status, None, response.read(4096))
        except urllib.error.HTTPError as err:
            try:
                body = err.read(4096)
            except Exception:
                body = b""
            return Result(err.code, None, body)
        except urllib.error.URLError as err:
            reason = err.reason
            return Result(None, f"{type(reason).__name__}: {reason}")
        except (OSError, http.client.HTTPException) as err:
            return Result(None, f"{type(err).__name__}: {err}")

    def ready(self) -> int | None:
        return self.request("GET", "/health/ready").status

    def wait_ready(self, timeout: float) -> float | None:
        """Polls /health/ready every 0.2 s; returns the time (script clock) of the first 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready() == 200:
                return now()
            if self.proc is not None and self.proc.poll() is not None:
                return None  # it died: no point waiting
            time.sleep(0.2)
        return None


# --------------------------------------------------------------------------------------------------
# Load
# --------------------------------------------------------------------------------------------------


@dataclass
class Record:
    start: float
    end: float
    phase: str
    kind: str                # register | sign_in | live
    status: int | None
    error: str | None
    email: str | None = None
    body: bytes = b""


@dataclass
class Run:
    """Everything the load threads and the phases share. All mutation under `lock`."""
    app: App
    password: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    records: list[Record] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)       # addresses whose registration got a 2xx
    phase: str = "baseline"
    counter: int = 0
    stop_load: threading.Event = field(default_factory=threading.Event)
    # [start, end] of each interval the app process was not running (kill -9 until ready again);
    # connection errors are expected only inside these.
    down_windows: list[list[float]] = field(default_factory=list)
    # [start, end] of each outage (fault until ready again, plus a little grace): a 503 is expected
    # only inside these. Outside, a 503 is a failure like any other.
    outage_windows: list[list[float]] = field(default_factory=list)

    def next_address(self) -> str:
        with self.lock:
            self.counter += 1
            return f"r{self.counter}@resilience.test"

    def record(self, rec: Record) -> None:
        with self.lock:
            self.records.append(rec)
            if rec.kind == "register" and rec.status is not None and 200 <= rec.status < 400:
                self.acked.append(rec.email or "")

    def earlier_account(self) -> str | None:
        with self.lock:
            return random.choice(self.acked) if self.acked else None

    def call(self, kind: str, email_address: str | None = None) -> Result:
        phase, start = self.phase, now()
        if kind == "register":
            result = self.app.request("POST", "/api/register", {
                "email": email_address or "", "display_name": "Resilience Tester",
                "password": self.password, "accept_terms": "on", "accept_privacy": "on"})
        elif kind == "sign_in":
            result = self.app.request("POST", "/api/sign_in",
                                      {"email": email_address or "", "password": self.password})
        else:
            result = self.app.request("GET", "/health/live")
        self.record(Record(start, now(), phase, kind, result.status, result.error, email_address,
                           result.body[:300] if result.status and result.status >= 400 else b""))
        return result


def load_worker(run_: Run, index: int) -> None:
    """Registers unique accounts in a loop; every 5th turn a liveness probe, every 7th a sign-in."""
    turn = 0
    while not run_.stop_load.is_set():
        turn += 1
        try:
            run_.call("register", run_.next_address())
            if turn % 5 == index % 5:
                run_.call("live")
            if turn % 7 == index % 7:
                earlier = run_.earlier_account()
                if earlier:
                    run_.call("sign_in", earlier)
        except Exception:  # a bug here must not silently stop the load
            traceback.print_exc()
        # A little pause: a steady stream, not a flood (the burst of phase d is the flood).
        run_.stop_load.wait(0.05)


def burst(run_: Run, stop: threading.Event) -> None:
    while not stop.is_set() and not run_.stop_load.is_set():
        if run_.call("register", run_.next_address()).status is None:
            time.sleep(0.05)  # the app is down: do not spin on refused connections


# --------------------------------------------------------------------------------------------------
# Phases
# --------------------------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    key: str
    name: str
    title: str
    started: float = 0.0
    fault_at: float = 0.0                 # the dependency went down / the process was killed
    back_at: float | None = None          # the dependency answered again / the process restarted
    ready_at: float | None = None         # /health/ready answered 200 again
    first_ack_after: float | None = None  # first acknowledged registration after the fault ended
    fault_observed: str = ""              # evidence the fault was real
    fault_ok: bool = True
    delivered_after: bool = True          # smtp: mail flows again after the sink is back
    notes: list[str] = field(default_factory=list)

    @property
    def outage(self) -> float | None:
        """Seconds from the fault to ready again (what a user of the site lives through)."""
        return None if self.ready_at is None else self.ready_at - self.fault_at

    @property
    def recovery(self) -> float | None:
        """Seconds from the dependency being back (or the kill, for d) to ready again."""
        if self.ready_at is None:
            return None
        base = self.fault_at if self.name == "kill9" else self.back_at
        return None if base is None else self.ready_at - base


class ReadyWatcher:
    """Polls /health/ready twice a second in the background, to see each outage from the outside."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.samples: list[tuple[float, int | None]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="ready-watch", daemon=True)

    def _loop(self) -> None:
        while not self.stop.is_set():
            self.samples.append((now(), self.app.ready()))
            self.stop.wait(0.5)

    def statuses_between(self, a: float, b: float) -> collections.Counter:
        return collections.Counter(s for t, s in list(self.samples) if a <= t <= b)


def outbox_backlog(db: str) -> tuple[int, int]:
    rows = psql(db, "SELECT count(*) FILTER (WHERE status = 'pending'), "
                    "count(*) FILTER (WHERE status = 'failed') FROM outbox_emails")
    return int(rows[0][0]), int(rows[0][1])


def settle(run_: Run, seconds: float) -> None:
    log(f"normal load for {seconds:.0f} s")
    time.sleep(seconds)


OUTAGE_GRACE_S = 2  # after /health/ready is 200 again, other pooled connections may still be stale


def finish_recovery(run_: Run, ph: PhaseResult, watcher: ReadyWatcher) -> None:
    ph.ready_at = run_.app.wait_ready(RECOVERY_BOUND_S + 30)
    with run_.lock:
        run_.outage_windows.append([ph.fault_at, (ph.ready_at or now()) + OUTAGE_GRACE_S])
    if ph.ready_at is None:
        log(f"!! {ph.title}: /health/ready not 200 within {RECOVERY_BOUND_S + 30} s")
    else:
        log(f"ready again {ph.recovery:.1f} s after "
            f"{'the kill' if ph.name == 'kill9' else 'the dependency came back'}")


def phase_postgres(run_: Run, ph: PhaseResult, watcher: ReadyWatcher, db: str) -> None:
    log("stopping PostgreSQL")
    ph.fault_at = now()
    pg_ctl("stop")
    if pg_up():
        raise RuntimeError("PostgreSQL is still up after stop")
    time.sleep(DEPENDENCY_DOWN_S)
    log("starting PostgreSQL")
    start_postgres()
    ph.back_at = now()
    finish_recovery(run_, ph, watcher)
    seen = watcher.statuses_between(ph.fault_at, ph.back_at)
    ph.fault_observed = f"/health/ready during the outage: {dict(seen)}"
    ph.fault_ok = seen.get(503, 0) > 0


def phase_redis(run_: Run, ph: PhaseResult, watcher: ReadyWatcher, db: str) -> None:
    log("shutting Redis down (nosave)")
    ph.fault_at = now()
    run(["redis-cli", "-p", str(REDIS_PORT), "shutdown", "nosave"], timeout=30, check=False)
    if not wait_until(lambda: not redis_up(), 10):
        raise RuntimeError("Redis is still up after shutdown")
    time.sleep(DEPENDENCY_DOWN_S)
    log("starting Redis")
    start_redis()
    ph.back_at = now()
    finish_recovery(run_, ph, watcher)
    seen = watcher.statuses_between(ph.fault_at, ph.back_at)
    ph.fault_observed = f"/health/ready during the outage: {dict(seen)}"
    ph.fault_ok = seen.get(503, 0) > 0


def phase_smtp(run_: Run, ph: PhaseResult, watcher: ReadyWatcher, db: str, sink: SmtpSink) -> None:
    log(f"stopping the SMTP sink for {SMTP_DOWN_S} s (port {sink.port} refuses connections)")
    before = len(sink.snapshot())
    ph.fault_at = now()
    sink.stop()
    time.sleep(SMTP_DOWN_S)
    pending, failed = outbox_backlog(db)
    arrived = len(sink.snapshot()) - before
    log(f"outbox before the sink comes back: {pending} pending, {failed} failed")
    sink.start()
    ph.back_at = now()
    log("SMTP sink listening again")
    # Readiness does not depend on SMTP; what recovers here is delivery.
    ph.ready_at = run_.app.wait_ready(RECOVERY_BOUND_S)
    seen = watcher.statuses_between(ph.fault_at, ph.back_at)
    ph.fault_observed = (f"{pending} emails pending when the sink returned; the sink got {arrived} "
                         f"while down; /health/ready during the outage: {dict(seen)}")
    ph.fault_ok = pending > 0 and arrived <= 1  # at most the one transaction already in progress
    deadline = time.monotonic() + RECOVERY_BOUND_S + 60
    while time.monotonic() < deadline:
        late = [m for m in sink.snapshot() if m.t >= ph.back_at]
        if late:
            ph.notes.append(f"first email delivered {late[0].t - ph.back_at:.1f} s after the sink "
                            "came back")
            log(ph.notes[-1])
            break
        time.sleep(0.2)
    else:
        ph.delivered_after = False
        ph.notes.append(f"no email delivered within {RECOVERY_BOUND_S + 60} s of the sink coming back")


def phase_kill9(run_: Run, ph: PhaseResult, watcher: ReadyWatcher, db: str) -> None:
    log(f"registration burst: {BURST_THREADS} threads for {BURST_S:.0f} s; kill -9 in the middle")
    stop = threading.Event()
    threads = [threading.Thread(target=burst, args=(run_, stop), name=f"burst-{i}", daemon=True)
               for i in range(BURST_THREADS)]
    for t in threads:
        t.start()
    time.sleep(BURST_S / 2)
    window = [now(), float("inf")]
    with run_.lock:
        run_.down_windows.append(window)
    ph.fault_at = window[0]
    old_pid = run_.app.proc.pid if run_.app.proc else None
    run_.app.kill9()
    log(f"killed pid {old_pid} with SIGKILL")
    # A supervisor restarts the process right away, with the same environment.
    run_.app.start()
    ph.back_at = now()
    time.sleep(max(0.0, BURST_S / 2 - (now() - ph.fault_at)))
    stop.set()
    for t in threads:
        t.join(timeout=HTTP_TIMEOUT_S + 5)
    finish_recovery(run_, ph, watcher)
    with run_.lock:
        window[1] = ph.ready_at if ph.ready_at is not None else now()
    conn_errors = sum(1 for r in run_.records if r.phase == "kill9" and r.status is None)
    ph.fault_observed = f"{conn_errors} requests failed to connect while the process was dead"
    ph.fault_ok = True


# --------------------------------------------------------------------------------------------------
# Checks and report
# --------------------------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


# (start, name) of each stretch of the run, in order, for saying when something happened.
TIMELINE: list[tuple[float, str]] = [(0.0, "baseline")]


def phase_at(t: float) -> str:
    name = TIMELINE[0][1]
    for start, phase in TIMELINE:
        if start <= t:
            name = phase
    return name


def in_down_window(run_: Run, rec: Record) -> bool:
    return any(a <= rec.end and rec.start <= b for a, b in run_.down_windows)


def in_outage(run_: Run, rec: Record) -> bool:
    return any(a <= rec.end and rec.start <= b for a, b in run_.outage_windows)


def summarize(run_: Run, phases: list[PhaseResult]) -> None:
    order = ["baseline"] + [p.name for p in phases]
    titles = {"baseline": "baseline"}
    titles.update({p.name: f"({p.key}) {p.name}" for p in phases})
    rows = []
    totals = collections.Counter()
    for name in order:
        recs = [r for r in run_.records if r.phase == name]
        c = collections.Counter()
        for r in recs:
            c["requests"] += 1
            if r.status is None:
                c["timeouts" if "timeout" in (r.error or "").lower() else "conn"] += 1
            elif 200 <= r.status < 300:
                c["2xx"] += 1
            elif r.status == 503:
                c["503"] += 1
            elif r.status >= 500:
                c["5xx"] += 1
            else:
                c["other"] += 1
            if r.kind == "register" and r.status is not None and 200 <= r.status < 400:
                c["acked"] += 1
        totals.update(c)
        ph = next((p for p in phases if p.name == name), None)
        rec = "-" if ph is None else ("NEVER" if ph.recovery is None else f"{ph.recovery:.1f}")
        out = "-" if ph is None else ("NEVER" if ph.outage is None else f"{ph.outage:.1f}")
        rows.append((titles[name], c, out, rec))
    header = (f"{'phase':<20}{'requests':>9}{'2xx':>7}{'503':>6}{'conn err':>9}{'timeout':>8}"
              f"{'500s':>6}{'other':>6}{'acked reg':>10}{'outage s':>9}{'recovery s':>11}")
    print("\n" + header)
    print("-" * len(header))
    for title, c, out, rec in rows + [("TOTAL", totals, "", "")]:
        if title == "TOTAL":
            print("-" * len(header))
        print(f"{title:<20}{c['requests']:>9}{c['2xx']:>7}{c['503']:>6}{c['conn']:>9}"
              f"{c['timeouts']:>8}{c['5xx']:>6}{c['other']:>6}{c['acked']:>10}{out:>9}{rec:>11}")
    print("Each phase row counts the requests from its fault to the next phase (its settle time "
          "included).\n500s: every 5xx but 503. other: any other status (4xx, 3xx). outage: fault to "
          "/health/ready 200 again. recovery: from the dependency answering again (pg_isready / PING "
          "OK, sink listening) — for kill9 from the kill — to /health/ready 200.")


def grep_log_for_lines(paths: list[Path]) -> list[dict]:
    lines = []
    for path in paths:
        try:
            with open(path, "rb") as fh:
                for raw in fh:
                    try:
                        lines.append(json.loads(raw))
                    except ValueError:
                        lines.append({"level": "RAW", "fields": {"message": raw.decode(errors="replace")
                                                                 .rstrip()}})
        except FileNotFoundError:
            pass
    return lines


def log_message(entry: dict) -> str:
    fields = entry.get("fields") or {}
    msg = fields.get("message") or entry.get("message") or ""
    err = fields.get("error")
    return f"{msg} ({err})" if err else str(msg)


def print_tail(paths: list[Path], n: int = LOG_TAIL_LINES) -> None:
    for path in paths[-2:]:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            continue
        print(f"\n--- last {min(n, len(lines))} lines of {path} ---")
        for line in lines[-n:]:
            print(line)


def run_checks(run_: Run, phases: list[PhaseResult], sink: SmtpSink, db: str,
               drained: bool) -> list[Check]:
    checks: list[Check] = []
    recs = run_.records

    # 1. Every acknowledged registration is a user (and queued its verification email).
    users = {row[0].lower() for row in psql(db, "SELECT email FROM users")}
    acked = set(a.lower() for a in run_.acked)
    missing = sorted(acked - users)
    checks.append(Check("every acknowledged registration exists in users", not missing and bool(acked),
                        f"{len(acked)} acknowledged, {len(users)} users in the table"
                        + (f"; MISSING {len(missing)}: {missing[:10]}" if missing else "")
                        + ("; no registration was acknowledged at all" if not acked else "")))

    rows = psql(db, "SELECT id, message_id, kind, to_address, subject, status, attempts, "
                    "coalesce(last_error, '') FROM outbox_emails ORDER BY id")
    outbox = [dict(zip(("id", "message_id", "kind", "to", "subject", "status", "attempts", "error"),
                       r)) for r in rows]
    verify_to = {o["to"].lower() for o in outbox if o["kind"] == "verify_email"}
    no_mail = sorted(acked - verify_to)
    checks.append(Check("every acknowledged registration queued its verification email", not no_mail,
                        f"{len(verify_to)} verify_email rows"
                        + (f"; MISSING for {len(no_mail)}: {no_mail[:10]}" if no_mail else "")))

    # 2. Outbox drained: nothing pending, nothing failed.
    by_status = collections.Counter(o["status"] for o in outbox)
    stuck = [o for o in outbox if o["status"] != "sent"]
    checks.append(Check("outbox drained (no pending or failed rows)", not stuck,
                        f"{dict(by_status)}; drained in time: {drained}"
                        + "".join(f"\n      row {o['id']} {o['kind']} to {o['to']}: {o['status']}, "
                                  f"{o['attempts']} attempts, last error: {o['error'][:160]}"
                                  for o in stuck[:10])))

    # 3. Each row delivered exactly once: at least once (with its own To and Subject), and never twice;
    #    nothing delivered that is not a row.
    messages = sink.snapshot()
    per_id = collections.Counter(m.message_id for m in messages)
    ids = {o["message_id"] for o in outbox}
    never = [o for o in outbox if per_id[o["message_id"]] == 0]
    dupes = [o for o in outbox if per_id[o["message_id"]] > 1]
    strangers = [m for m in messages if m.message_id not in ids]
    mismatched = []
    by_id = {o["message_id"]: o for o in outbox}
    for m in messages:
        o = by_id.get(m.message_id)
        if o and (m.to != o["to"].lower() or m.subject != o["subject"] or m.rcpts != [o["to"].lower()]):
            mismatched.append((o["id"], m.to, m.subject, m.rcpts))
    detail = (f"{len(outbox)} rows, {len(messages)} messages at the sink; "
              f"kinds: {dict(collections.Counter(o['kind'] for o in outbox))}")
    if never:
        detail += f"\n      never delivered: {[(o['id'], o['kind'], o['to']) for o in never[:10]]}"
    if mismatched:
        detail += f"\n      To/Subject differ from the row: {mismatched[:10]}"
    checks.append(Check("every outbox row delivered (at least once, to its recipient, its subject)",
                        not never and not mismatched, detail))

    # The same count by recipient + subject (what a person sees in their inbox), and when each copy came.
    want = collections.Counter((o["to"].lower(), o["subject"]) for o in outbox)
    got = collections.Counter((m.to, m.subject) for m in messages)
    inbox_diff = {k: (want[k], got[k]) for k in set(want) | set(got) if want[k] > 0 and got[k] > want[k]}
    detail = (f"{len(dupes)} rows delivered more than once; (recipient, subject) pairs with more "
              f"messages than rows: {len(inbox_diff)}")
    for o in dupes[:10]:
        copies = [m.t for m in messages if m.message_id == o["message_id"]]
        detail += (f"\n      row {o['id']} {o['kind']} to {o['to']} (attempts recorded: "
                   f"{o['attempts']}): {len(copies)} copies, same Message-ID, arrived at "
                   + ", ".join(f"+{t:.1f}s [{phase_at(t)}]" for t in copies))
    if dupes:
        detail += ("\n      Each copy carries the row's Message-ID: the worker re-sent a message the sink "
                   "had already accepted, because the outcome was never recorded (process killed, or "
                   "database gone, between the SMTP 250 and the UPDATE); the row's 120 s lease ran out "
                   "and the email was sent again (at-least-once delivery, see src/server/mail/mod.rs).")
    # The one duplicate no sender can rule out: the process killed (-9) after the SMTP server accepted
    # the email and before the database recorded it. Such a copy carries the same Message-ID (mail
    # systems fold them into one). Every other duplicate — a database or Redis restart, an SMTP outage,
    # a graceful stop — is a failure: the worker keeps trying to record a sent email while its lease
    # holds, and a stopping worker finishes the email in hand.
    kills = [p.fault_at for p in phases if p.key == "d"]
    def crash_window(o: dict) -> bool:
        copies = sorted(m.t for m in messages if m.message_id == o["message_id"])
        same = len({(m.to, m.subject) for m in messages if m.message_id == o["message_id"]}) == 1
        # The sink may log the message a moment after the signal (the data was already in flight).
        return same and len(copies) == 2 and any(k - 2.0 <= copies[0] <= k + 0.5 for k in kills)
    unexplained = [o for o in dupes if not crash_window(o)]
    crashed = len(dupes) - len(unexplained)
    if crashed:
        detail += (f"\n      {crashed} re-sent after the kill -9 (first copy accepted within 2 s before "
                   "it, same Message-ID): the one window no SMTP sender can close")
    extra_inbox = set(inbox_diff) - {(o["to"].lower(), o["subject"]) for o in dupes}
    checks.append(Check("no email delivered twice, but across the kill -9 window (same Message-ID)",
                        not unexplained and not extra_inbox, detail))
    checks.append(Check("the sink got nothing that is not in the outbox", not strangers,
                        f"{len(strangers)} unknown messages"
                        + (f": {[(m.message_id, m.to, m.subject) for m in strangers[:10]]}"
                           if strangers else "")))

    # 4. No 500s; nothing unexpected.
    fives = [r for r in recs if r.status is not None and r.status >= 500 and r.status != 503]
    checks.append(Check("no 500 responses", not fives,
                        f"{len(fives)} responses with 5xx other than 503"
                        + "".join(f"\n      +{r.start:.1f}s {r.phase} {r.kind} -> {r.status} "
                                  f"{r.body[:200]!r}" for r in fives[:10])))
    odd = [r for r in recs if r.status is not None and r.status < 500
           and not 200 <= r.status < 400]
    checks.append(Check("no unexpected statuses (every answer is 2xx/3xx or 503)", not odd,
                        f"{len(odd)} other answers"
                        + "".join(f"\n      +{r.start:.1f}s {r.phase} {r.kind} {r.email} -> "
                                  f"{r.status} {r.body[:200]!r}" for r in odd[:10])))
    late = [r for r in recs if r.status == 503 and not in_outage(run_, r)]
    checks.append(Check("503 only during an outage (fault until ready again "
                        f"+{OUTAGE_GRACE_S} s)", not late,
                        f"{sum(r.status == 503 for r in recs)} answers 503, {len(late)} outside an "
                        "outage" + "".join(f"\n      +{r.start:.1f}s..+{r.end:.1f}s {r.phase} {r.kind}"
                                           f" -> 503 {r.body[:160]!r}" for r in late[:10])))
    stray = [r for r in recs if r.status is None and not in_down_window(run_, r)]
    checks.append(Check("no connection errors or timeouts while the process was running", not stray,
                        f"{len(stray)} outside the kill -9 window"
                        + "".join(f"\n      +{r.start:.1f}s..+{r.end:.1f}s {r.phase} {r.kind}: "
                                  f"{r.error}" for r in stray[:10])))

    # 5. Recovery: ready again within the bound, the fault was real, and requests succeed afterwards.
    for ph in phases:
        after = [r for r in recs if r.kind == "register" and r.start >= (ph.ready_at or 1e18)
                 and r.status is not None and 200 <= r.status < 300]
        ph.first_ack_after = after[0].end if after else None
        ok = (ph.recovery is not None and ph.recovery <= RECOVERY_BOUND_S and ph.fault_ok
              and ph.first_ack_after is not None and ph.delivered_after)
        rec = "never" if ph.recovery is None else f"{ph.recovery:.1f} s"
        first = ("none" if ph.first_ack_after is None
                 else f"{ph.first_ack_after - (ph.back_at or ph.fault_at):.1f} s after the fault ended")
        checks.append(Check(f"({ph.key}) {ph.title}: recovered by itself within {RECOVERY_BOUND_S} s",
                            ok, f"ready in {rec}; first acknowledged registration {first}; "
                                f"{ph.fault_observed}" + "".join(f"; {n}" for n in ph.notes)))

    # 6. The log: no passwords, no panics.
    raw = b"".join(p.read_bytes() for p in run_.app.logs if p.exists())
    needles = {run_.password, urllib.parse.quote_plus(run_.password), run_.password.split()[-1]}
    leaked = [n for n in needles if n.encode() in raw]
    checks.append(Check("the app log never contains the password", not leaked,
                        f"searched {len(raw)} bytes for the password (plain, form-encoded and its "
                        f"unique word)" + (f"; FOUND {len(leaked)} forms" if leaked else "")))
    panics = raw.count(b"panic")
    checks.append(Check("no panics in the app log", panics == 0, f"{panics} mentions of 'panic'"))
    exits = run_.app.unexpected_exits
    checks.append(Check("the app never exited on its own", not exits, "; ".join(exits) or "none"))
    return checks


def drain_outbox(db: str, load_end: float) -> bool:
    """Waits until nothing is pending. The deadline follows the outbox itself: at least DRAIN_MIN_S,
    longer while a pending row's next attempt (or an expiring lease) is still ahead or the backlog still
    shrinks, up to DRAIN_MAX_S.
    """
    last_print = 0.0
    # The smallest backlog seen so far, and when it was seen (seconds after the load stopped).
    fewest, progress_at = None, 0.0
    while True:
        row = psql(db, "SELECT count(*) FILTER (WHERE status = 'pending'), "
                       "count(*) FILTER (WHERE status = 'failed'), "
                       "coalesce(max(greatest(next_attempt_at, coalesce(locked_until, 0))) "
                       "FILTER (WHERE status = 'pending'), 0), "
                       "extract(epoch FROM now())::bigint FROM outbox_emails")[0]
        pending, failed, due, db_now = (int(x) for x in row)
        if pending == 0:
            log(f"outbox drained {now() - load_end:.0f} s after the load stopped ({failed} failed)")
            return True
        waited = now() - load_end
        if fewest is None or pending < fewest:
            fewest, progress_at = pending, waited
        # The worker polls every 5 s: give a due row that long plus a margin. And keep waiting while
        # the backlog still shrinks: a long SMTP outage can leave more than the worker sends in
        # DRAIN_MIN_S (1,757 after 60 s of fast registrations), which is a backlog, not a loss. An
        # outbox that stops sending stops shrinking, and still fails after 15 s.
        wait_for = max(DRAIN_MIN_S, waited + (due - db_now) + 15, progress_at + 15)
        deadline = min(DRAIN_MAX_S, wait_for)
        if waited >= deadline:
            log(f"!! outbox not drained after {waited:.0f} s: {pending} pending, {failed} failed")
            return False
        if now() - last_print >= 10:
            last_print = now()
            log(f"waiting for the outbox: {pending} pending, {failed} failed, last retry time or "
                f"lease end {max(0, due - db_now)} s ahead")
        time.sleep(1)


# --------------------------------------------------------------------------------------------------
# Set-up and clean-up
# --------------------------------------------------------------------------------------------------


def find_binary() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/nestegg/target"))
    binary = Path(os.environ.get("NESTEGG_BIN", target / "debug" / "nestegg"))
    # Another build may be replacing it right now: wait a little for it to reappear.
    if not wait_until(lambda: binary.is_file() and os.access(binary, os.X_OK), 120, 2):
        raise RuntimeError(f"no server binary at {binary} (set NESTEGG_BIN)")
    return binary


def site_root(workdir: Path) -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/nestegg/target"))
    real = target / "site"
    if real.is_dir():
        return real
    # The API does not need the real WASM bundle, only files of the right names.
    stub = workdir / "site"
    (stub / "pkg").mkdir(parents=True, exist_ok=True)
    (stub / "pkg" / "nestegg.css").write_text("body { margin: 0 }\n")
    (stub / "pkg" / "nestegg.js").write_text("export default function init() {}\n")
    (stub / "pkg" / "nestegg.wasm").write_bytes(b"\0asm\x01\0\0\0")
    return stub


def pin_binary(binary: Path, workdir: Path) -> Path:
    """A hard link (or copy) in the temp dir: if the binary is rebuilt during the run, the restart after
    kill -9 still runs the very same build (the linker replaces the file; our link keeps the old one).
    """
    pinned = workdir / "nestegg"
    try:
        os.link(binary, pinned)
    except OSError:
        shutil.copy2(binary, pinned)
    return pinned


def delete_redis_keys(prefix: str) -> int:
    """Every key under our prefix, plus the session records the index hashes point at (tower-sessions
    names those itself, without the prefix: the record of session key K is stored under
    base64url(first 16 bytes of K)). Sessions never indexed (none here) expire by their TTL.
    """
    keys = [k for k in redis_cli("--scan", "--pattern", f"{prefix}:*").splitlines() if k]
    sessions = []
    for key in keys:
        if key.startswith(f"{prefix}:user-sessions:"):
            for field_ in redis_cli("hkeys", key).splitlines():
                try:
                    raw = bytes.fromhex(field_.strip())[:16]
                except ValueError:
                    continue
                if len(raw) == 16:
                    sessions.append(base64.urlsafe_b64encode(raw).decode().rstrip("="))
    doomed = keys + sessions
    deleted = 0
    for i in range(0, len(doomed), 200):
        out = redis_cli("del", *doomed[i:i + 200]).strip()
        deleted += int(out) if out.isdigit() else 0
    return deleted


def app_env(workdir: Path, port: int, smtp_port: int, db_name: str, prefix: str) -> dict[str, str]:
    """A clean environment: nothing from this shell leaks in (and no `.env`: cwd is the temp dir)."""
    key = lambda: base64.b64encode(os.urandom(32)).decode()  # noqa: E731
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "LEPTOS_CONFIG": str(REPO / "Leptos.toml"),
        "LEPTOS_SITE_ROOT": str(site_root(workdir)),
        "LEPTOS_SITE_ADDR": f"127.0.0.1:{port}",
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "ENVIRONMENT": "development",
        "DATA_DIR": str(workdir / "data"),
        "DATABASE_URL": f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{db_name}",
        "REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}/0",
        "REDIS_KEY_PREFIX": prefix,
        "SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "METRICS_ADDR": "off",
        "LOG_FORMAT": "json",
        "RUST_LOG": "info",
        "SECRET_KEY": key(),
        "ENCRYPTION_KEY": key(),
        # Limits far above the load: every request comes from 127.0.0.1.
        "RATE_LIMIT_REGISTER_PER_HOUR": "1000000",
        "RATE_LIMIT_API_PER_MINUTE": "1000000",
        "RATE_LIMIT_PAGES_PER_MINUTE": "1000000",
        "RATE_LIMIT_SIGN_IN_PER_MINUTE": "1000000",
        "RATE_LIMIT_RESET_PER_HOUR": "1000000",
    }


def test_runs_in_progress() -> list[str]:
    """Other processes that look like a test run (cargo test / nextest): they share PostgreSQL and
    Redis, which this script stops and restarts."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [Path(a.decode(errors="replace")).name for a in argv if a]
        if "cargo-nextest" in words or ("cargo" in words and "test" in words):
            found.append(f"{pid}: {' '.join(words)[:120]}")
    return found


def _interrupt(signum, frame):  # SIGTERM behaves like Ctrl-C: the finally blocks still run
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--order", default="c,d,a,b",
                        help="phases to run, in order (a=postgres b=redis c=smtp d=kill9); "
                             "default c,d,a,b")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir even on success")
    parser.add_argument("--force", action="store_true",
                        help="run even if a cargo test / nextest run seems to be in progress")
    args = parser.parse_args()
    order = [k.strip() for k in args.order.split(",") if k.strip()]
    if not order or any(k not in PHASES for k in order) or len(set(order)) != len(order):
        parser.error("--order takes distinct letters among a, b, c, d")
    signal.signal(signal.SIGTERM, _interrupt)
    busy = test_runs_in_progress()
    if busy and not args.force:
        print("A test run seems to be in progress; it shares PostgreSQL and Redis, which this script "
              "stops and restarts. Wait for it to finish, or pass --force.\n  " + "\n  ".join(busy),
              file=sys.stderr)
        return 3

    run_id = secrets.token_hex(4)
    db_name = f"nestegg_resilience_{run_id}"
    prefix = f"resilience-{run_id}"
    # Strong enough for the zxcvbn policy, and unique to this run so the log can be searched for it.
    password = f"glacier Minnow 47 paperclip orbit Quokka{run_id}Zest"
    workdir = Path(tempfile.mkdtemp(prefix=f"nestegg-resilience-{run_id}-"))
    log(f"run {run_id}: temp dir {workdir}, database {db_name}, Redis prefix {prefix}")

    sink = SmtpSink()
    app: App | None = None
    run_: Run | None = None
    watcher: ReadyWatcher | None = None
    threads: list[threading.Thread] = []
    db_created = False
    passed = False
    try:
        ensure_services()
        binary = pin_binary(find_binary(), workdir)
        sink.start()
        log(f"SMTP sink on 127.0.0.1:{sink.port}")
        psql("postgres", f"CREATE DATABASE {db_name}")
        db_created = True
        port = free_port()
        app = App(binary, app_env(workdir, port, sink.port, db_name, prefix), workdir, port)
        app.start()
        ready_at = app.wait_ready(STARTUP_TIMEOUT_S)
        if ready_at is None:
            raise RuntimeError("the app did not become ready")
        log(f"app ready at {app.base}")

        run_ = Run(app=app, password=password)
        watcher = ReadyWatcher(app)
        watcher.thread.start()
        for i in range(LOAD_THREADS):
            t = threading.Thread(target=load_worker, args=(run_, i), name=f"load-{i}", daemon=True)
            t.start()
            threads.append(t)
        log(f"steady load: {LOAD_THREADS} threads")
        settle(run_, BASELINE_S)
        with run_.lock:
            baseline = collections.Counter(r.status or r.error for r in run_.records)
            acked_so_far = len(run_.acked)
        log(f"baseline: {sum(baseline.values())} requests, {acked_so_far} acknowledged registrations, "
            f"answers {dict(baseline)}")
        if acked_so_far == 0:
            # Nothing works even without a fault: no point running the phases.
            raise RuntimeError("no registration was acknowledged under normal load")

        phases: list[PhaseResult] = []
        for key in order:
            name, title = PHASES[key]
            ph = PhaseResult(key, name, title, started=now())
            phases.append(ph)
            run_.phase = name
            TIMELINE.append((ph.started, f"({key}) {name}"))
            log(f"=== phase ({key}) {title} ===")
            if name == "postgres":
                phase_postgres(run_, ph, watcher, db_name)
            elif name == "redis":
                phase_redis(run_, ph, watcher, db_name)
            elif name == "smtp":
                phase_smtp(run_, ph, watcher, db_name, sink)
            else:
                phase_kill9(run_, ph, watcher, db_name)
            if not app.alive():
                app.unexpected_exits.append(f"exited with {app.proc.returncode} in phase {name}")
                log("!! the app exited on its own: restarting it")
                app.start()
                app.wait_ready(STARTUP_TIMEOUT_S)
            settle(run_, SETTLE_S)

        run_.stop_load.set()
        for t in threads:
            t.join(timeout=HTTP_TIMEOUT_S + 5)
        load_end = now()
        TIMELINE.append((load_end, "drain (no load)"))
        kinds = collections.Counter(r.kind for r in run_.records)
        log(f"load stopped: {len(run_.records)} requests {dict(kinds)}, {len(run_.acked)} "
            "acknowledged registrations")
        if not app.alive():
            app.unexpected_exits.append(f"exited with {app.proc.returncode} before the drain")
        drained = drain_outbox(db_name, load_end)
        watcher.stop.set()

        summarize(run_, phases)
        for ph in phases:
            print(f"  ({ph.key}) {ph.title}: fault at +{ph.fault_at:.1f}s, back at "
                  f"+{(ph.back_at or 0):.1f}s, ready at "
                  f"{'never' if ph.ready_at is None else f'+{ph.ready_at:.1f}s'}")
        checks = run_checks(run_, phases, sink, db_name, drained)
        # Retry statistics, for the record.
        attempts = collections.Counter(int(r[0]) for r in psql(
            db_name, "SELECT attempts FROM outbox_emails WHERE status = 'sent'"))
        print(f"\nDelivery attempts per sent email: {dict(sorted(attempts.items()))}")
        entries = grep_log_for_lines(app.logs)
        levels = collections.Counter(e.get("level", "?") for e in entries)
        print(f"App log: {len(entries)} lines, by level {dict(levels)}")
        worst = collections.Counter(log_message(e)[:160] for e in entries
                                    if e.get("level") in ("ERROR", "WARN"))
        for msg, n in worst.most_common(12):
            print(f"  {n:>5} x {msg}")

        print("\nChecks:")
        for c in checks:
            print(f"  [{'PASS' if c.ok else 'FAIL'}] {c.name}\n      {c.detail}")
        passed = all(c.ok for c in checks)
        total = now()
        print(f"\n{'PASSED' if passed else 'FAILED'} in {total:.0f} s "
              f"({sum(c.ok for c in checks)}/{len(checks)} checks)")
        if not passed:
            print_tail(app.logs)
        return 0 if passed else 1
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        return 130
    except Exception:
        traceback.print_exc()
        log("!! the run broke off: cleaning up")
        if app is not None:
            print_tail(app.logs)
        return 2
    finally:
        # Cleanup must finish even if Ctrl-C is pressed again; every step below has its own timeout.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if run_ is not None:
            run_.stop_load.set()
        if watcher is not None:
            watcher.stop.set()
        for t in threads:
            t.join(timeout=HTTP_TIMEOUT_S + 5)
        if app is not None:
            code = app.terminate()
            log(f"app stopped (exit code {code})")
        ensure_services()
        if db_created:
            try:
                psql("postgres", f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")
                log(f"dropped database {db_name}")
            except Exception as err:
                log(f"!! could not drop {db_name}: {err}")
        try:
            log(f"deleted {delete_redis_keys(prefix)} Redis keys of {prefix}")
        except Exception as err:
            log(f"!! could not delete Redis keys of {prefix}: {err}")
        sink.stop()
        # The pinned binary link would keep an old build's 400+ MB alive once the target is rebuilt.
        (workdir / "nestegg").unlink(missing_ok=True)
        if passed and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"logs kept in {workdir}")
        log(f"PostgreSQL {'up' if pg_up() else 'DOWN'}, Redis {'up' if redis_up() else 'DOWN'}")


if __name__ == "__main__":
    sys.exit(main())
