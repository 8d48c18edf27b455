#!/usr/bin/env python3
"""A faithful model of the trading bots' TokenCoordinator (docs/DESIGN.md "The bots"), for interop tests.

Cache `saxo_token_cache.json` (flat JSON, five keys), lock `saxo_token.lock` (fcntl.flock
LOCK_EX|LOCK_NB retried every 100 ms), readers take no lock, trust the cache while more than
--buffer seconds remain, otherwise refresh under the lock and write the cache (tmp file always
named `saxo_token_cache.tmp`, no fsync, then rename; token_expiry = naive local now + expires_in
- margin). As the fleet's TokenCoordinator does, unchanged:
  - an auth failure (invalid_grant from the token endpoint) deletes the cache file (clear_cache);
  - at startup, after loading tokens from the secret, it waits at most 5 s for the lock and then
    writes the cache WITHOUT the lock (update_cache);
  - after its own fallback refresh it saves to the shared secret (read the latest payload, replace
    access_token, refresh_token, token_expiry, add a version). PyPI is not reachable here, so the
    bot hands the three values to the test (--secret-save FILE) and the test-side harness
    (test/helpers/reliability-fleet.ts) performs that exact algorithm with the real client.

Modes:
  loop       --duration S --interval S --report FILE : work like a bot, one JSON line per tick
             (--stop-file FILE: also end, after the tick in progress, once FILE exists)
  hold-lock  --hold S      : take the lock (print WAITING if contended), print LOCKED, hold, release, print RELEASED
                             (SIGUSR1 ends the hold early: a release at the moment the test chooses)
  try-lock                 : one LOCK_EX|LOCK_NB attempt; print LOCKED (exit 0) or EWOULDBLOCK (exit 1)
  write-stale --from FILE  : write the given pair into the cache without the lock, like a careless script
  startup --from FILE      : a starting bot: FILE is the payload it loaded from the secret; wait at most
                             --startup-lock-wait (5) s for the lock, then write the cache (with the lock:
                             print LOCKED_WRITE; without it: print UNLOCKED_WRITE)
  refresh                  : one get_token() as a bot's check would (print TRUSTED, REFRESHED, CLEARED
                             (auth failure: cache deleted), or ERROR <reason>; exit 0 / 1)
  probe-lock --duration S  : try LOCK_EX|LOCK_NB every --interval s (pass 0.05); print READY, then on the end
                             or SIGTERM one line PROBE {"attempts", "busy", "stretches": [[start, end], ...]}
                             (epoch seconds of each contiguous busy stretch) and exit 0
--secret-save FILE: after a fallback refresh, write {"access_token","refresh_token","token_expiry"}
  (what the fleet saves into the secret) to FILE and print SECRET_SAVE FILE.
  read                     : print the cache as JSON (null when missing or unreadable)
  check                    : print {"trusted", "remaining", "expiry_epoch"} as a bot would judge the cache
App credentials: SAXO_APP_KEY / SAXO_APP_SECRET from the environment, else from the cache.
"""
import argparse
import errno
import fcntl
import io
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone

CACHE_NAME = "saxo_token_cache.json"
CACHE_TMP_NAME = "saxo_token_cache.tmp"
LOCK_NAME = "saxo_token.lock"


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class LockTimeout(Exception):
    pass


class AuthFailure(Exception):
    """The token endpoint rejected the refresh token (invalid_grant); the cache was deleted."""


class Coordinator:
    def __init__(self, args):
        self.args = args
        self.data_dir = args.data_dir
        self.cache_path = os.path.join(self.data_dir, CACHE_NAME)
        self.lock_path = os.path.join(self.data_dir, LOCK_NAME)
        self.lock_fd = None

    # --- lock -------------------------------------------------------------------------------
    def try_lock_once(self):
        fd = os.open(self.lock_path, os.O_CREAT | os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise
        self.lock_fd = fd
        return True

    def acquire(self, announce=False, timeout=None):
        deadline = time.monotonic() + (self.args.lock_timeout if timeout is None else timeout)
        first = True
        while True:
            if self.try_lock_once():
                return
            if announce and first:
                out("WAITING")  # lets tests see the bot is contending, without sleeping
            first = False
            if time.monotonic() >= deadline:
                raise LockTimeout()
            time.sleep(0.1)

    def release(self):
        if self.lock_fd is not None:
            fcntl.flock(self.lock_fd, fcntl.LOCK_UN)
            os.close(self.lock_fd)
            self.lock_fd = None

    # --- cache --------------------------------------------------------------------------------
    def read_cache(self):
        try:
            with open(self.cache_path) as f:
                data = json.load(f)
            return data if isinstance(data, dict) else None
        except (OSError, ValueError):
            return None

    @staticmethod
    def parse_expiry(s):
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
        return dt

    def remaining(self, cache):
        try:
            dt = self.parse_expiry(cache["token_expiry"])
        except (KeyError, TypeError, ValueError):
            return None, None
        now = datetime.now(timezone.utc) if dt.tzinfo is not None else datetime.now()
        return (dt - now).total_seconds(), dt.timestamp()

    def trusted(self, cache):
        if not cache or not cache.get("access_token") or not cache.get("refresh_token"):
            return False
        rem, _ = self.remaining(cache)
        return rem is not None and rem > self.args.buffer

    def write_cache(self, data):
        # As the fleet writes it: a fixed tmp name, no fsync, then rename.
        tmp = os.path.join(self.data_dir, CACHE_TMP_NAME)
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, self.cache_path)

    def clear_cache(self):
        try:
            os.remove(self.cache_path)
        except FileNotFoundError:
            pass

    def update_cache(self, data):
        """Startup: under the lock if it comes within the startup wait, else without it."""
        try:
            self.acquire(timeout=self.args.startup_lock_wait)
        except LockTimeout:
            self.write_cache(data)
            return False
        try:
            self.write_cache(data)
            return True
        finally:
            self.release()

    # --- refresh ------------------------------------------------------------------------------
    def credentials(self, cache):
        key = os.environ.get("SAXO_APP_KEY") or (cache or {}).get("app_key") or ""
        secret = os.environ.get("SAXO_APP_SECRET") or (cache or {}).get("app_secret") or ""
        return key, secret

    def refresh(self, cache):
        key, secret = self.credentials(cache)
        body = urllib.parse.urlencode({
            "grant_type": "refresh_token",
            "refresh_token": cache["refresh_token"],
            "client_id": key,
            "client_secret": secret,
        }).encode()
        req = urllib.request.Request(self.args.token_url, data=body, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                if resp.status not in (200, 201):
                    raise RuntimeError("http_%d" % resp.status)
                tok = json.loads(resp.read())
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                err = json.loads(body).get("error")
            except (ValueError, AttributeError):
                err = None
            if err == "invalid_grant":
                self.clear_cache()  # the fleet drops a cache whose token was rejected
                raise AuthFailure()
            raise urllib.error.HTTPError(e.url, e.code, e.msg, e.hdrs, io.BytesIO(body)) from None
        expiry = datetime.now() + timedelta(seconds=float(tok["expires_in"]) - self.args.margin)
        new = {
            "access_token": tok["access_token"],
            "refresh_token": tok["refresh_token"],
            "token_expiry": expiry.isoformat(),
            "app_key": key,
            "app_secret": secret,
        }
        self.write_cache(new)
        if self.args.secret_save:
            # The fleet's save to the shared secret, done by the test harness (see the docstring).
            with open(self.args.secret_save, "w") as f:
                json.dump({k: new[k] for k in ("access_token", "refresh_token", "token_expiry")}, f)
            out("SECRET_SAVE " + self.args.secret_save)
        return new

    def get_token(self):
        """Returns (cache, refreshed). Raises on refresh failure or lock timeout."""
        cache = self.read_cache()
        if self.trusted(cache):
            return cache, False
        self.acquire(announce=True)
        try:
            cache = self.read_cache()  # someone may have refreshed while we waited
            if self.trusted(cache):
                return cache, False
            if not cache or not cache.get("refresh_token"):
                raise RuntimeError("no_token")
            return self.refresh(cache), True
        finally:
            self.release()

    def bearer_valid(self, access_token):
        req = urllib.request.Request(self.args.check_url, headers={"Authorization": "Bearer " + access_token})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return 200 <= resp.status < 300
        except urllib.error.HTTPError:
            return False


def mode_loop(c, a):
    end = time.monotonic() + a.duration
    with open(a.report, "a") as rep:
        while time.monotonic() < end and not (a.stop_file and os.path.exists(a.stop_file)):
            rec = {"t": time.time(), "pid": os.getpid()}
            try:
                cache, refreshed = c.get_token()
                rem, _ = c.remaining(cache)
                rec.update(expired=rem is None or rem <= 0, refreshed=refreshed, remaining=rem)
                if a.check_url:
                    rec["valid"] = c.bearer_valid(cache["access_token"])
            except LockTimeout:
                rec.update(expired=True, refreshed=False, error="lock_timeout")
            except AuthFailure:
                rec.update(expired=True, refreshed=False, error="invalid_grant")
            except urllib.error.HTTPError as e:
                try:
                    err = json.loads(e.read()).get("error", "http_%d" % e.code)
                except ValueError:
                    err = "http_%d" % e.code
                rec.update(expired=True, refreshed=False, error=err)
            except Exception as e:  # noqa: BLE001 - a bot logs and carries on
                rec.update(expired=True, refreshed=False, error=type(e).__name__ + ":" + str(e)[:80])
            rep.write(json.dumps(rec) + "\n")
            rep.flush()
            time.sleep(a.interval)
    out("DONE")


def mode_probe(c, a):
    """Records every contiguous stretch during which LOCK_EX|LOCK_NB failed."""
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("now", True))
    end = time.monotonic() + a.duration
    attempts = busy = 0
    stretches = []
    start = None
    out("READY")
    while not stop["now"] and time.monotonic() < end:
        attempts += 1
        t = time.time()
        if c.try_lock_once():
            c.release()
            if start is not None:
                stretches.append([start, t])
                start = None
        else:
            busy += 1
            if start is None:
                start = t
        time.sleep(a.interval)
    if start is not None:
        stretches.append([start, time.time()])
    out("PROBE " + json.dumps({"attempts": attempts, "busy": busy, "stretches": stretches}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", required=True, choices=["loop", "hold-lock", "try-lock", "write-stale", "startup", "refresh", "probe-lock", "read", "check"])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--lock-timeout", type=float, default=30.0)
    p.add_argument("--buffer", type=float, default=120.0)
    p.add_argument("--margin", type=float, default=60.0)
    p.add_argument("--token-url", default="")
    p.add_argument("--check-url", default="")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--report", default="")
    p.add_argument("--hold", type=float, default=1.0)
    p.add_argument("--from", dest="src", default="")
    p.add_argument("--startup-lock-wait", type=float, default=5.0)
    p.add_argument("--secret-save", default="")
    p.add_argument("--stop-file", default="")
    a = p.parse_args()
    c = Coordinator(a)

    if a.mode == "hold-lock":
        try:
            c.acquire(announce=True)
        except LockTimeout:
            out("LOCK_TIMEOUT")
            return 3

        class ReleaseNow(Exception):
            pass

        def release_now(*_):
            raise ReleaseNow()

        signal.signal(signal.SIGUSR1, release_now)  # before LOCKED: the test signals only after it
        out("LOCKED")
        try:
            time.sleep(a.hold)
        except ReleaseNow:
            pass
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        c.release()
        out("RELEASED")
        return 0
    if a.mode == "try-lock":
        if c.try_lock_once():
            out("LOCKED")
            c.release()
            return 0
        out("EWOULDBLOCK")
        return 1
    if a.mode == "write-stale":
        with open(a.src) as f:
            c.write_cache(json.load(f))
        out("WRITTEN")
        return 0
    if a.mode == "startup":
        with open(a.src) as f:
            payload = json.load(f)
        keys = ("access_token", "refresh_token", "token_expiry", "app_key", "app_secret")
        out("LOCKED_WRITE" if c.update_cache({k: payload[k] for k in keys if k in payload}) else "UNLOCKED_WRITE")
        return 0
    if a.mode == "refresh":
        try:
            _, refreshed = c.get_token()
        except AuthFailure:
            out("CLEARED")
            return 1
        except Exception as e:  # noqa: BLE001 - reported to the test
            out("ERROR " + type(e).__name__)
            return 1
        out("REFRESHED" if refreshed else "TRUSTED")
        return 0
    if a.mode == "probe-lock":
        mode_probe(c, a)
        return 0
    if a.mode == "read":
        out(json.dumps(c.read_cache()))
        return 0
    if a.mode == "check":
        cache = c.read_cache()
        rem, epoch = c.remaining(cache) if cache else (None, None)
        out(json.dumps({"trusted": c.trusted(cache), "remaining": rem, "expiry_epoch": epoch}))
        return 0
    if a.mode == "loop":
        mode_loop(c, a)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
