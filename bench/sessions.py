#!/usr/bin/env python3
"""Creates live sessions by signing in COUNT times (bench/run.sh, before the 1000-client run).

wrk cannot stop after a fixed number of requests, hence this small client. Standard library only, so
the benchmark needs nothing installed besides wrk. Each sign-in costs one argon2 hash on the server,
which is what limits the rate (a few minutes for 10,000 on two cores); progress goes to stderr.

Prints one line to stdout: `signed_in=N failed=M seconds=S statuses=200:N,...`. Exits non-zero only
when the arguments are wrong; failures are reported, and judged by the caller.
"""

import argparse
import http.client
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="http://127.0.0.1:PORT")
    parser.add_argument("--email", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()

    base = urllib.parse.urlsplit(args.url)
    origin = f"{base.scheme}://{base.netloc}"
    body = urllib.parse.urlencode({"email": args.email, "password": args.password})
    # What the app's own sign-in form sends (a same-origin fetch): the CSRF check wants both headers.
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Origin": origin,
        "Sec-Fetch-Site": "same-origin",
    }

    local = threading.local()
    lock = threading.Lock()
    statuses: dict[str, int] = {}
    done = 0
    started = time.monotonic()

    def connection() -> http.client.HTTPConnection:
        # One keep-alive connection per worker thread, like a browser tab signing in again and again.
        if getattr(local, "conn", None) is None:
            local.conn = http.client.HTTPConnection(base.hostname, base.port, timeout=60)
        return local.conn

    def sign_in(_: int) -> None:
        nonlocal done
        try:
            conn = connection()
            conn.request("POST", "/api/sign_in", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            key = str(response.status)
            # A session exists only if the server handed out its cookie.
            if response.status < 400 and "_session=" not in (response.getheader("Set-Cookie") or ""):
                key += "-without-cookie"
        except (OSError, http.client.HTTPException) as err:
            local.conn = None  # reconnect on the next attempt
            key = type(err).__name__
        with lock:
            statuses[key] = statuses.get(key, 0) + 1
            done += 1
            if done % 500 == 0 or done == args.count:
                rate = done / max(time.monotonic() - started, 1e-9)
                print(f"  sessions: {done}/{args.count} ({rate:.0f}/s)", file=sys.stderr, flush=True)

    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        list(pool.map(sign_in, range(args.count)))

    elapsed = time.monotonic() - started
    ok = sum(n for status, n in statuses.items() if status.isdigit() and int(status) < 400)
    summary = ",".join(f"{status}:{n}" for status, n in sorted(statuses.items()))
    print(f"signed_in={ok} failed={args.count - ok} seconds={elapsed:.1f} statuses={summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
