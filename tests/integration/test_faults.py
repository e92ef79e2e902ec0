"""Fault tolerance (issue 5): every row of the fault matrix, injected against the real daemon.

KiotViet faults come from the simulator's fault API (tests/kvsim/README.md); database faults from
pg_terminate_backend, a TCP proxy between the daemon and PostgreSQL that the test can cut (so the
session's cluster is never stopped), a lock (statement timeout) and a trigger raising SQLSTATE 53100
(disk full); host clock jumps from a small LD_PRELOAD shim that offsets CLOCK_REALTIME only.
After each fault the test checks the shop's tables, sync_logs and the integration row.

Scaled down: leases of 3 s stand in for a minute (the daemon waits one lease period for the
database inside a run), max_retries and request_timeout are small, and retry delays start at
50-100 ms ([kiotviet] retry_base_ms = 100, capped at retry_cap_ms = 400) instead of 0.5-1 s.
"""

import contextlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kvsim.client import Sim  # noqa: E402

import kvsd  # noqa: E402

LEASE = 3
RETRY_BASE_MS, RETRY_CAP_MS = 100, 400


# ---- fixtures and helpers --------------------------------------------------------------------

@contextlib.contextmanager
def watched(d):
    """Runs the block with daemon d; whatever happens, d is killed if it still runs and the end
    of its log is printed (pytest shows it when the test fails)."""
    try:
        yield d
    finally:
        if d.proc.poll() is None:
            d.kill()
        print(d.log()[-6000:])


@pytest.fixture
def sim(make_sim):
    return make_sim(products=250, seed=5)


def config(db, workdir, dsn=None, name="kvs.conf", **sections):
    """Config with short timeouts; sections override or add keys."""
    base = {
        "sync": {"lease_seconds": LEASE, "poll_interval": 1, "grace_period": 2},
        "kiotviet": {"max_retries": 3, "request_timeout": 5, "connect_timeout": 2,
                     "retry_base_ms": RETRY_BASE_MS, "retry_cap_ms": RETRY_CAP_MS},
        "log": {"level": "info"},
    }
    for sec, kv in sections.items():
        base.setdefault(sec, {}).update(kv)
    return kvsd.write_config(workdir / name, dsn or db.dsn, **base)


def no_sanitizer_report(text):
    assert "Sanitizer" not in text, text[-4000:]


def once(cfg, *args, env=None, timeout=120):
    res = kvsd.run_once(cfg, *args, env=env, timeout=timeout)
    no_sanitizer_report(res.err)
    return res


def integ(db, name="kiotviet"):
    rows = db.sql("SELECT products_cursor, categories_cursor, consecutive_failures,"
                  " sync_lease_owner, last_full_sync_at, access_token, token_expires_at"
                  " FROM public.third_party_integrations WHERE name = %s", name)
    keys = ["products_cursor", "categories_cursor", "consecutive_failures", "lease_owner",
            "last_full", "token", "token_expires"]
    return dict(zip(keys, rows[0]))


def logs(db, name="kiotviet"):
    return db.sql("SELECT l.id, l.status, l.sync_type, l.error_message, l.error_details,"
                  " l.completed_at IS NOT NULL FROM public.sync_logs l"
                  " JOIN public.third_party_integrations i ON i.id = l.integration_id"
                  " WHERE i.name = %s ORDER BY l.id", name)


def catalog_products(sim, retailer="demoshop"):
    return {p["id"]: p for p in sim.catalog(retailer)["products"] if not p.get("masterUnitId")}


def check_products(db, sim, retailer="demoshop", exclude=()):
    """Every product of the catalogue is stored once, with its name, code, price and status; the
    shop has no synced product the catalogue does not have (except ones marked deleted)."""
    cat = catalog_products(sim, retailer)
    cols = {r[0] for r in db.sql("SELECT column_name FROM information_schema.columns"
                                 " WHERE table_schema = 'public' AND table_name = 'products'")}
    sku = "sku" if "sku" in cols else "code"
    rows = db.sql(f"SELECT kiotviet_id, name, {sku}, price, kiotviet_status FROM public.products"
                  " WHERE kiotviet_id IS NOT NULL")
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)), "duplicate kiotviet_id rows"
    got = {r[0]: r for r in rows}
    want = set(cat) - set(exclude)
    missing = want - set(got)
    assert not missing, f"missing products: {sorted(missing)[:10]}"
    for pid in want:
        p, r = cat[pid], got[pid]
        assert r[1] == p["name"] and r[2] == p.get("code"), pid
        if p.get("basePrice") is not None:
            assert Decimal(r[3]) == Decimal(str(p["basePrice"])).quantize(r[3]), pid
        assert r[4] == ("active" if p.get("isActive", True) else "inactive"), pid
    extra = {k for k, r in got.items() if k not in cat and r[4] != "deleted"}
    assert not extra, f"products KiotViet does not have: {sorted(extra)[:10]}"


def scheduler_jitter_ms(integration_id):
    """The start-time jitter the daemon gives an integration (scheduler.c jitter_of: FNV-1a of
    the id text, modulo 3000 ms)."""
    h = 1469598103934665603
    for b in integration_id.encode():
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h % 3000


def give_small_jitter(db, name="kiotviet", max_ms=150):
    """Gives the integration (before it has any sync_logs row) an id whose start jitter is at
    most max_ms, so a daemon test need not wait out up to 3 s of it. Only the waits depend on
    this; the assertions hold whatever the jitter."""
    while True:
        new = str(uuid.uuid4())
        if scheduler_jitter_ms(new) <= max_ms:
            break
    db.sql("UPDATE public.third_party_integrations SET id = %s WHERE name = %s", new, name)
    return new


def retry_delays(text):
    """The waits the client announced: [(attempt, ms), ...]."""
    return [(int(a), int(ms)) for a, ms in re.findall(r"retry (\d+) in (\d+) ms", text)]


# ---- a TCP proxy in front of PostgreSQL ---------------------------------------------------------

class PgProxy:
    """Forwards 127.0.0.1:port to the cluster. cut() resets every connection and every new one
    (the database looks down: libpq fails at once); restore() forwards again."""

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.up = True
        self.closed = False
        self.lock = threading.Lock()
        self.pairs = []
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def dsn(self, dbname):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    @staticmethod
    def _reset(s):
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        try:
            s.close()
        except OSError:
            pass

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            if not self.up:
                self._reset(c)
                continue
            try:
                u = socket.create_connection(self.target, timeout=5)
            except OSError:
                self._reset(c)
                continue
            with self.lock:
                self.pairs.append((c, u))
            threading.Thread(target=self._pump, args=(c, u), daemon=True).start()

    def _pump(self, a, b):
        socks = [a, b]
        try:
            while True:
                r, _, _ = select.select(socks, [], [], 0.5)
                if self.closed:
                    break
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        raise OSError("eof")
                    (b if s is a else a).sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            self._reset(a)
            self._reset(b)
            with self.lock:
                if (a, b) in self.pairs:
                    self.pairs.remove((a, b))

    def cut(self):
        self.up = False
        self.cuts += 1
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for a, b in pairs:
            self._reset(a)
            self._reset(b)

    def restore(self):
        self.up = True

    def close(self):
        self.closed = True
        self.cut()
        self.lsock.close()


@pytest.fixture
def proxy(pg):
    p = PgProxy(pg.port)
    yield p
    p.close()


def wait_running_with_progress(db, min_products=1, timeout=30):
    """Waits until a run is storing products (its sync_logs row is running with progress)."""
    return kvsd.wait_until(
        lambda: db.sql("SELECT id FROM public.sync_logs WHERE status = 'running' AND"
                       " products_synced >= %s", min_products),
        timeout=timeout, interval=0.05, what="a run storing products")


# ---- token endpoint -----------------------------------------------------------------------------

def test_token_endpoint_transient_errors_are_retried(db, sim, workdir):
    kvsd.setup_integration(db, sim)
    cfg = config(db, workdir, kiotviet={"request_timeout": 1, "max_retries": 3})
    # 503, then an answer slower than the request timeout
    sim.faults([
        {"match": "/connect/token", "times": 1, "kind": "status", "status": 503},
        {"match": "/connect/token", "after": 1, "times": 1, "kind": "delay", "ms": 2500},
    ])
    res = once(cfg)
    assert res.rc == 0, res
    assert sim.stats("demoshop")["token_requests"] == 3
    assert "token request failed (HTTP 503" in res.err
    assert re.search(r"token request failed \([^)]*(timed out|Timeout|curl 28)", res.err), res.err
    assert kvsd.last_log(db)["status"] == "success"
    check_products(db, sim)
    # A connection reset, then a truncated 200 (not JSON): both retried as hiccups.
    db.sql("UPDATE public.third_party_integrations SET access_token = NULL")
    sim.faults([
        {"match": "/connect/token", "times": 1, "kind": "reset"},
        {"match": "/connect/token", "after": 1, "times": 1, "kind": "truncate"},
    ])
    res = once(cfg)
    assert res.rc == 0, res
    assert sim.stats("demoshop")["token_requests"] == 6
    assert "not JSON" in res.err
    log = kvsd.last_log(db)
    assert log["status"] == "success" and log["error_message"] is None
    assert integ(db)["token"]


def test_bad_credentials_fail_that_integration_only(db, workdir):
    with Sim(products=120, seed=9, retailers=("shopa", "shopb")) as sim:
        kvsd.setup_integration(db, sim, retailer="shopa")
        kvsd.setup_integration(db, sim, retailer="shopb", name="kiotviet-b", insert=True)
        db.sql("UPDATE public.third_party_integrations SET client_secret = 'not-the-secret-42'"
               " WHERE name = 'kiotviet-b'")
        res = once(config(db, workdir))
        assert res.rc == 1, res
        good, bad = kvsd.last_log(db), kvsd.last_log(db, "kiotviet-b")
        assert good["status"] == "success"
        assert bad["status"] == "failed" and "credentials" in bad["error_message"]
        assert "invalid_client" in bad["error_message"]
        # not retried: a 400 from the token endpoint is not transient
        assert sim.stats("shopb")["token_requests"] == 1
        assert sim.stats("shopb")["gets"] == 0
        assert integ(db, "kiotviet-b")["consecutive_failures"] == 1
        assert integ(db, "kiotviet-b")["lease_owner"] is None
        check_products(db, sim, "shopa")
        assert "not-the-secret-42" not in res.err + res.out + json.dumps(bad["error_details"])


def test_401_mid_run_gets_one_new_token(db, sim, workdir):
    kvsd.setup_integration(db, sim)
    cfg = config(db, workdir, sync={"pages_in_flight": 1})
    sim.faults([{"match": "/products", "after": 1, "times": 1, "kind": "token_expired"}])
    res = once(cfg)
    assert res.rc == 0, res
    assert sim.stats("demoshop")["token_requests"] == 2
    assert res.err.count("token refused (HTTP 401)") == 1
    assert kvsd.last_log(db)["status"] == "success"
    check_products(db, sim)
    first = integ(db)["token"]
    # The stored token is revoked between runs: the next run gets exactly one new one.
    sim.expire_tokens()
    sim.mutate(edit=3)
    res = once(cfg)
    assert res.rc == 0, res
    assert sim.stats("demoshop")["token_requests"] == 3
    assert integ(db)["token"] != first
    check_products(db, sim)


# ---- rate limits and 503 ------------------------------------------------------------------------

def test_429_and_503_wait_as_told_then_continue(db, sim, workdir):
    kvsd.setup_integration(db, sim)
    cfg = config(db, workdir, sync={"pages_in_flight": 1})
    # One page each (a retried request counts too: requests 2 and 4 fail, 3 and 5 retry them)
    sim.faults([
        {"match": "/categories", "times": 1, "kind": "status", "status": 503},
        {"match": "/products", "after": 1, "times": 1, "kind": "status", "status": 429,
         "headers": {"Retry-After": "1"}},
        {"match": "/products", "after": 3, "times": 1, "kind": "status", "status": 429},
    ])
    t0 = time.monotonic()
    res = once(cfg)
    took = time.monotonic() - t0
    assert res.rc == 0, res
    # in order (one page at a time): the 503, the 429 with Retry-After, the 429 without
    delays = retry_delays(res.err)
    assert len(delays) == 3, delays
    assert delays[1] == (1, 1000), delays                   # Retry-After honoured exactly
    # without Retry-After: the first retry waits base/2 + jitter (retry_base_ms)
    assert all(RETRY_BASE_MS // 2 <= ms <= RETRY_BASE_MS for _, ms in (delays[0], delays[2])), \
        delays
    assert took >= 1.0 + 2 * RETRY_BASE_MS / 2000
    st = sim.stats("demoshop")
    log = kvsd.last_log(db)
    assert log["status"] == "success"
    # every GET sent, retries included, is counted in the run's requests
    assert log["requests_made"] == st["gets"] + st["token_requests"]
    check_products(db, sim)


def test_get_budget_is_respected_retries_included(db, sim, workdir):
    kvsd.setup_integration(db, sim)
    cfg = config(db, workdir, sync={"page_size": 20, "pages_in_flight": 2,
                                    "hourly_get_budget": 10, "grace_period": 1},
                 log={"level": "debug"})  # its line per poll
    sim.faults([{"match": "/products", "after": 1, "times": 2, "kind": "status",
                 "status": 503}])
    db.sql("UPDATE public.third_party_integrations SET sync_requested_at = now()")  # no jitter
    d = kvsd.Daemon(cfg)
    with watched(d):
        kvsd.wait_until(lambda: "hourly GET budget used up" in d.log(), timeout=30,
                        what="the budget wait")
        # two polls later (the sign that time has passed), still no GET beyond the budget
        mark = d.log().count("integrations read: ")
        kvsd.wait_until(lambda: d.log().count("integrations read: ") >= mark + 2, timeout=20,
                        what="two more polls")
        assert sim.stats("demoshop")["gets"] == 10      # 8 pages + 2 retries, then it waits
        rc = d.stop()
    out = d.log()
    no_sanitizer_report(out)
    assert rc == 0, out[-3000:]
    assert sim.stats("demoshop")["gets"] == 10
    log = kvsd.last_log(db)
    assert log["status"] == "cancelled" and log["completed"]
    row = integ(db)
    assert row["products_cursor"] is None and row["lease_owner"] is None
    assert row["consecutive_failures"] == 0


# ---- transport faults ---------------------------------------------------------------------------

def test_5xx_reset_and_stall_are_retried(db, sim, workdir):
    kvsd.setup_integration(db, sim)
    cfg = config(db, workdir, sync={"pages_in_flight": 1},
                 kiotviet={"request_timeout": 1, "max_retries": 3})
    sim.faults([
        # half a body, then silence: the request timeout cuts it
        {"match": "/categories", "times": 1, "kind": "stall", "seconds": 8},
        # Twice: a reset of a request on a reused connection, before any answer, is retried
        # on a fresh connection by curl itself, unseen; the second then meets the daemon.
        {"match": "/products", "after": 0, "times": 2, "kind": "reset"},
        {"match": "/products", "after": 2, "times": 1, "kind": "status", "status": 502},
    ])
    res = once(cfg)
    assert res.rc == 0, res
    assert "HTTP 502" in res.err
    assert re.search(r"request failed \([^)]*(reset|Empty reply|curl 5[256])", res.err), res.err
    # curl's error text can be a reset's; code 28 is its timeout
    assert re.search(r"request failed \([^)]*(timed out|Timeout|curl 28)", res.err), res.err
    # the timeout says which limit cut it (curl's name for code 28, then the phase)
    assert "request failed (Timeout was reached, total timeout of 1 s: " in res.err, res.err
    assert re.search(r"request failed \([^(]*, while (sending the request|waiting for the answer|"
                     r"receiving the answer)(: [^(]*)? \(curl 5[256]\)", res.err), res.err
    assert len(retry_delays(res.err)) >= 3
    assert kvsd.last_log(db)["status"] == "success"
    check_products(db, sim)


def test_persistent_5xx_fails_the_run_cleanly(db, sim, workdir):
    kvsd.setup_integration(db, sim)
    cfg = config(db, workdir, sync={"pages_in_flight": 1}, kiotviet={"max_retries": 2})
    sim.faults([{"match": "/products", "after": 1, "times": -1, "kind": "status", "status": 500}])
    res = once(cfg)
    assert res.rc == 1, res
    log = kvsd.last_log(db)
    assert log["status"] == "failed" and log["completed"]
    assert "giving up after 3 attempts: HTTP 500" in log["error_message"]
    det = log["error_details"]
    assert det["phase"] == "products" and det["consecutive_failures"] == 1
    assert det["next_attempt_minutes"] == 120       # the 60-minute interval, doubled once
    row = integ(db)
    assert row["products_cursor"] is None and row["categories_cursor"] is None
    assert row["consecutive_failures"] == 1 and row["lease_owner"] is None
    # branches, categories, first page, 3 tries
    assert sim.stats("demoshop")["gets"] == 1 + 1 + 1 + 3
    # The fault clears: the next run completes.
    sim.clear_faults()
    res = once(cfg)
    assert res.rc == 0, res
    assert integ(db)["consecutive_failures"] == 0
    check_products(db, sim)


def test_dns_failure_fails_the_run_cleanly(db, sim, workdir):
    kvsd.setup_integration(db, sim)
    db.sql("UPDATE public.third_party_integrations SET api_url = 'https://kvs-fault-test.invalid',"
           " token_url = 'https://kvs-fault-test.invalid/connect/token'")
    res = once(config(db, workdir,
                      kiotviet={"max_retries": 1, "allowed_hosts": "kvs-fault-test.invalid"}))
    assert res.rc == 1, res
    log = kvsd.last_log(db)
    assert log["status"] == "failed"
    assert "token request failed after 2 attempts" in log["error_message"]
    assert "resolve" in log["error_message"].lower()
    assert integ(db)["lease_owner"] is None


class Blackhole:
    """A listening socket whose accept queue is full: new connections are never answered (the
    kernel drops their SYNs), so a client's connect times out, like a firewalled host."""

    def __init__(self):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(0)
        self.port = self.lsock.getsockname()[1]
        self.fill = []
        for _ in range(3):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.setblocking(False)
            try:
                c.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self.fill.append(c)
        time.sleep(0.1)

    def close(self):
        for c in self.fill:
            c.close()
        self.lsock.close()


def test_connect_timeout_names_its_phase_and_no_url_secrets(db, sim, workdir):
    kvsd.setup_integration(db, sim)
    hole = Blackhole()
    try:
        # a query in the URL must not reach the logs or sync_logs (userinfo is refused before
        # any request: test_security)
        db.sql("UPDATE public.third_party_integrations SET token_url = %s",
               f"http://127.0.0.1:{hole.port}/connect/token?code=qs-5521")
        res = once(config(db, workdir, kiotviet={"max_retries": 1, "connect_timeout": 1,
                                                 "retry_base_ms": 100, "retry_cap_ms": 200}))
    finally:
        hole.close()
    assert res.rc == 1, res
    log = kvsd.last_log(db)
    assert log["status"] == "failed"
    msg = log["error_message"]
    assert "token request failed after 2 attempts: Timeout was reached, connect timeout of 1 s: " \
        in msg, msg
    assert msg.endswith("(curl 28)"), msg  # the connect timeout ended it, not a longer wait
    text = res.out + res.err + msg + json.dumps(log["error_details"])
    assert "qs-5521" not in text


# ---- bad answers --------------------------------------------------------------------------------

def test_bad_records_are_reported_and_the_rest_stored(shop_db, sim, workdir):
    db = shop_db
    kvsd.setup_integration(db, sim)
    cfg = config(db, workdir, sync={"pages_in_flight": 1})
    cat = sorted(catalog_products(sim))
    sim.faults([
        {"match": "/products", "after": 0, "times": 1, "kind": "bad_record", "index": 3,
         "variant": "wrong_types"},
        {"match": "/products", "after": 1, "times": 1, "kind": "bad_record", "index": 5,
         "variant": "missing_id"},
        {"match": "/categories", "times": 1, "kind": "bad_record", "index": 2,
         "variant": "wrong_types"},
    ])
    res = once(cfg)
    assert res.rc == 0, res
    log = kvsd.last_log(db)
    assert log["status"] == "partial" and log["completed"]
    assert log["products_failed"] == 2 and log["categories_failed"] == 1
    fails = log["error_details"]["failures"]
    assert len(fails) == 3 and log["error_details"]["failures_total"] == 3
    assert all(f.get("error") for f in fails)
    wrong_id = cat[3]                  # page 1 is ordered by id: index 3 is the 4th id
    missing = cat[97 + 5]              # page 2 starts at offset 97 (3 rows of overlap)
    # the broken records are not stored; every other record is
    stored = {r[0] for r in db.sql("SELECT kiotviet_id FROM public.products"
                                   " WHERE kiotviet_id IS NOT NULL")}
    assert wrong_id not in stored and missing not in stored
    check_products(db, sim, exclude={wrong_id, missing})
    assert db.value("SELECT count(*) FROM public.categories WHERE kiotviet_id IS NOT NULL") == 29
    # a record without an id makes deletion by reconciliation unsafe: nothing marked deleted
    assert log["products_deactivated"] == 0
    # partial runs advance the cursor: a record's content only changes when KiotViet edits
    # it, which moves it past the cursor again
    assert integ(db)["products_cursor"] is not None
    sim.mutate(set={"id": wrong_id, "fields": {"description": "sửa lại"}})
    res = once(cfg)
    assert res.rc == 0 and kvsd.last_log(db)["status"] == "success", res
    assert wrong_id in {r[0] for r in db.sql("SELECT kiotviet_id FROM public.products")}


def test_malformed_and_truncated_pages_are_retried(db, sim, workdir):
    kvsd.setup_integration(db, sim)
    cfg = config(db, workdir, sync={"pages_in_flight": 3})
    sim.faults([
        {"match": "/categories", "times": 1, "kind": "truncate"},
        {"match": "/products", "after": 1, "times": 1, "kind": "malformed"},
        {"match": "/products", "after": 2, "times": 1, "kind": "truncate"},
    ])
    res = once(cfg)
    assert res.rc == 0, res
    assert res.err.count("invalid JSON from KiotViet") == 3
    assert kvsd.last_log(db)["status"] == "success"
    check_products(db, sim)


def test_a_page_that_never_parses_fails_the_run(db, sim, workdir):
    kvsd.setup_integration(db, sim)
    cfg = config(db, workdir, sync={"pages_in_flight": 1}, kiotviet={"max_retries": 1})
    sim.faults([{"match": "/products", "after": 1, "times": -1, "kind": "malformed"}])
    res = once(cfg)
    assert res.rc == 1, res
    log = kvsd.last_log(db)
    assert log["status"] == "failed"
    assert "giving up after 2 attempts: invalid JSON" in log["error_message"]
    assert integ(db)["products_cursor"] is None
    # the first page was stored in its own transaction; nothing else
    assert db.value("SELECT count(*) FROM public.products WHERE kiotviet_id IS NOT NULL") == 100


def test_total_changes_and_shifting_rows_lose_nothing(db, sim, workdir):
    kvsd.setup_integration(db, sim)
    cfg = config(db, workdir, sync={"pages_in_flight": 1})
    sim.faults([
        {"match": "/products", "after": 0, "times": 1, "kind": "total_change", "delta": -200},
        {"match": "/products", "after": 1, "times": 2, "kind": "duplicate"},
        {"match": "/products", "after": 3, "times": 1, "kind": "total_change", "delta": 150},
        {"match": "/products", "after": 1, "times": 1, "kind": "drift",
         "mutation": {"delete": 4, "add": 3}},
        {"match": "/categories", "times": 1, "kind": "duplicate"},
    ])
    res = once(cfg)
    assert res.rc == 0, res
    log = kvsd.last_log(db)
    assert log["status"] == "success"
    check_products(db, sim)
    live = len(catalog_products(sim))
    # counts are of distinct records: duplicates are harmless and not double-counted
    assert log["products_synced"] == db.value(
        "SELECT count(*) FROM public.products WHERE kiotviet_id IS NOT NULL") >= live


# ---- database faults ----------------------------------------------------------------------------

def test_backend_killed_mid_transaction_is_retried(db, sim, workdir):
    kvsd.setup_integration(db, sim)
    # Each products statement takes 0.3 s, so the test can kill it inside its transaction.
    db.sql("CREATE FUNCTION public.kvs_slow() RETURNS trigger LANGUAGE plpgsql AS"
           " $$BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END$$")
    db.sql("CREATE TRIGGER kvs_slow AFTER INSERT OR UPDATE ON public.products"
           " FOR EACH STATEMENT EXECUTE FUNCTION public.kvs_slow()")
    cfg = config(db, workdir, sync={"pages_in_flight": 1})
    p = subprocess.Popen(kvsd.base_args() + ["-c", cfg, "--once"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    killed = 0
    deadline = time.monotonic() + 30
    while killed < 2 and time.monotonic() < deadline and p.poll() is None:
        pids = db.sql("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                      " AND application_name = 'kiotviet-syncd' AND state = 'active'"
                      " AND query LIKE 'WITH lease AS%%'"     # a page (or relink) statement
                      " AND now() - query_start > interval '100 ms'")  # in the slow trigger
        for (pid,) in pids[:1]:
            if db.value("SELECT pg_terminate_backend(%s)", pid):
                killed += 1
        time.sleep(0.05)
    out, err = p.communicate(timeout=60)
    no_sanitizer_report(err)
    assert killed == 2
    assert p.returncode == 0, err[-3000:]
    assert err.count("database connection lost") >= 2
    log = kvsd.last_log(db)
    assert log["status"] == "success"
    check_products(db, sim)
    assert integ(db)["products_cursor"] is not None


def test_database_outage_inside_a_run_is_bridged(db, sim, workdir, proxy):
    kvsd.setup_integration(db, sim)
    sim.config(latency_ms=40)
    cfg = config(db, workdir, dsn=proxy.dsn(db.name),
                 sync={"page_size": 20, "pages_in_flight": 1})
    p = subprocess.Popen(kvsd.base_args() + ["-c", cfg, "--once"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    wait_running_with_progress(db, 20)
    proxy.cut()
    time.sleep(LEASE / 2)                 # down for half the run's patience
    proxy.restore()
    out, err = p.communicate(timeout=60)
    no_sanitizer_report(err)
    assert p.returncode == 0, err[-3000:]
    assert "database connection lost" in err
    log = kvsd.last_log(db)
    assert log["status"] == "success", log
    check_products(db, sim)


def outage_daemon(db, sim, workdir, proxy, **sync):
    """A daemon syncing slowly through the proxy: its config (connect timeout 2 s, pages of 20,
    one at a time, plus `sync`) and the Daemon, not started waiting yet."""
    kvsd.setup_integration(db, sim)
    give_small_jitter(db)
    sim.config(latency_ms=40)
    cfg = config(db, workdir, dsn=proxy.dsn(db.name), name="kvs-proxy.conf",
                 sync={"page_size": 20, "pages_in_flight": 1, **sync},
                 database={"connect_timeout": 2})
    return kvsd.Daemon(cfg)


def cut_mid_run(db, d, proxy):
    """Cuts the database while d's run stores products; returns once the run gave up waiting
    for it and waits to record its end. Returns the run's sync_logs id."""
    wait_running_with_progress(db, 20)
    run_id = db.value("SELECT max(id) FROM public.sync_logs")
    proxy.cut()
    kvsd.wait_until(lambda: "will record the end of the run when the database is back"
                    in d.log(), timeout=LEASE + 5, what="the run to give up waiting")
    return run_id


def test_database_down_longer_daemon_stays_up_and_logs_when_back(db, sim, workdir, proxy):
    d = outage_daemon(db, sim, workdir, proxy)
    with watched(d):
        # longer than a run waits for the database: it gave up and waits to record its end
        first = cut_mid_run(db, d, proxy)
        time.sleep(1.0)                   # a few polls and retries against the dead database
        assert d.proc.poll() is None, "the daemon exited while the database was down"
        assert db.value("SELECT status FROM public.sync_logs WHERE id = %s", first) == "running"
        proxy.restore()
        # the failed run is recorded once the database is back, then the next run syncs
        kvsd.wait_until(lambda: db.value("SELECT status FROM public.sync_logs WHERE id = %s",
                                         first) != "running", timeout=30, what="the late log")
        # The scheduler retries a run that lost the database by itself, at most a poll interval
        # (here 1 s) later; the integration is still due (its last_sync_at did not move), so
        # the next list, once the database answers, re-arms it at once (plus its jitter) instead
        # of leaving the 30 s retry timer in place.
        back = time.monotonic()
        kvsd.wait_until(lambda: db.sql("SELECT 1 FROM public.sync_logs WHERE id > %s AND"
                                       " status = 'success'", first), timeout=15,
                        what="a successful run after the outage")
        assert time.monotonic() - back < 10
        assert not db.value("SELECT sync_requested_at IS NOT NULL FROM"
                            " public.third_party_integrations WHERE name = 'kiotviet'")
        assert d.proc.poll() is None
        rc = d.stop()
    out = d.log()
    no_sanitizer_report(out)
    assert rc == 0, out[-3000:]
    status, msg, det = db.sql("SELECT status, error_message, error_details FROM"
                              " public.sync_logs WHERE id = %s", first)[0]
    assert status == "failed" and "database unavailable" in msg
    assert det["database_unavailable"] is True and det["recorded_after_retries"] >= 1
    assert "will record the end of the run when the database is back" in out
    assert "could not read the integrations" in out or "cannot claim" in out
    row = integ(db)
    assert row["consecutive_failures"] == 0      # the database's fault, not the integration's
    assert row["lease_owner"] is None
    assert not db.sql("SELECT 1 FROM public.sync_logs WHERE status = 'running'")
    check_products(db, sim)


def test_stop_during_database_outage_does_not_hang(db, sim, workdir, proxy):
    d = outage_daemon(db, sim, workdir, proxy, grace_period=1)
    with watched(d):
        dead = cut_mid_run(db, d, proxy)
        rc = d.stop(timeout=20)  # SIGTERM; a daemon still there after 20 s is killed (rc -9)
    no_sanitizer_report(d.log())
    assert rc == 0, rc
    assert "stopping before the end of the run could be recorded" in d.log()
    proxy.restore()
    # The unrecorded run is closed by the next claim (its lease lapsed during the outage).
    kvsd.wait_until(lambda: db.value("SELECT sync_lease_expires_at < now() FROM"
                                     " public.third_party_integrations WHERE name = 'kiotviet'"),
                    timeout=LEASE + 5, what="the lease to expire")
    sim.config(latency_ms=0)
    res = once(config(db, workdir))
    assert res.rc == 0, res
    st, msg = db.sql("SELECT status, error_message FROM public.sync_logs WHERE id = %s", dead)[0]
    assert st == "failed" and "abandoned" in msg
    check_products(db, sim)


def test_constraint_violation_fails_only_that_row(shop_db, sim, workdir):
    db = shop_db
    kvsd.setup_integration(db, sim)
    cat = catalog_products(sim)
    victim = sorted(cat)[150]
    code = cat[victim]["code"]
    if db.shape == "bigint":
        # this shape's code column is not unique (its own rows repeat codes): make this one so
        db.sql("CREATE UNIQUE INDEX products_code_key ON public.products (code) WHERE code = "
               + "'" + code.replace("'", "''") + "'")
        db.sql("INSERT INTO public.products (name, code, price) VALUES ('Shop item', %s, 1)", code)
    else:
        db.sql("INSERT INTO public.products (name, sku) VALUES ('Shop item', %s)", code)
    cfg = config(db, workdir)
    res = once(cfg)
    assert res.rc == 0, res
    log = kvsd.last_log(db)
    assert log["status"] == "partial"
    assert log["products_failed"] == 1
    assert log["products_synced"] == len(cat) - 1
    (f,) = log["error_details"]["failures"]
    assert f["id"] == victim and "duplicate key" in f["error"]
    check_products(db, sim, exclude={victim})
    sku = "code" if db.shape == "bigint" else "sku"
    assert db.sql(f"SELECT name, kiotviet_id FROM public.products WHERE {sku} = %s", code) == [
        ("Shop item", None)]
    # The cursor does not pass the refused row: once the shop fixes the clash, the next
    # incremental run stores it, although KiotViet did not change it.
    db.sql(f"UPDATE public.products SET {sku} = 'SHOP-RENAMED' WHERE {sku} = %s", code)
    res = once(cfg)
    assert res.rc == 0, res
    log = kvsd.last_log(db)
    assert log["sync_type"] == "incremental" and log["status"] == "success"
    check_products(db, sim)


def test_statement_timeout_fails_cleanly(db, sim, workdir, pg):
    kvsd.setup_integration(db, sim)
    cfg = config(db, workdir, database={"statement_timeout": 1})
    locker = pg.connect(db.name, autocommit=False)
    try:
        # blocks writes to products (reads, e.g. schema discovery, still work)
        locker.execute("LOCK TABLE public.products IN SHARE MODE")
        res = once(cfg)
    finally:
        locker.rollback()
        locker.close()
    assert res.rc == 1, res
    log = kvsd.last_log(db)
    assert log["status"] == "failed" and log["completed"]
    assert "statement timeout" in log["error_message"] and "57014" in log["error_message"]
    row = integ(db)
    assert row["products_cursor"] is None and row["lease_owner"] is None
    assert db.value("SELECT count(*) FROM public.products WHERE kiotviet_id IS NOT NULL") == 0
    res = once(cfg)
    assert res.rc == 0, res
    check_products(db, sim)


def test_disk_full_error_fails_cleanly(db, sim, workdir):
    kvsd.setup_integration(db, sim)
    db.sql("CREATE FUNCTION public.kvs_full() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN"
           " RAISE EXCEPTION 'could not extend file \"base/1/2\": No space left on device'"
           " USING ERRCODE = 'disk_full'; END$$")
    db.sql("CREATE TRIGGER kvs_full BEFORE INSERT ON public.products"
           " FOR EACH ROW EXECUTE FUNCTION public.kvs_full()")
    cfg = config(db, workdir)
    res = once(cfg)
    assert res.rc == 1, res
    log = kvsd.last_log(db)
    assert log["status"] == "failed"
    assert "No space left on device" in log["error_message"] and "53100" in log["error_message"]
    assert log["error_details"]["phase"] == "products"
    # each page is one transaction: not one product row got in
    assert db.value("SELECT count(*) FROM public.products WHERE kiotviet_id IS NOT NULL") == 0
    assert integ(db)["products_cursor"] is None
    db.sql("DROP TRIGGER kvs_full ON public.products")
    res = once(cfg)
    assert res.rc == 0, res
    check_products(db, sim)


# ---- kill -9 ------------------------------------------------------------------------------------

def test_kill_9_mid_run_then_restart_resyncs_from_last_cursor(db, sim, workdir):
    kvsd.setup_integration(db, sim)
    cfg = config(db, workdir, sync={"page_size": 20, "pages_in_flight": 1})
    assert once(cfg).rc == 0
    cursor = integ(db)["products_cursor"]
    changed = sim.mutate(edit=30, add=10, delete=5)
    sim.config(latency_ms=60)
    db.sql("UPDATE public.third_party_integrations SET sync_requested_at = now()")  # run now
    d = kvsd.Daemon(cfg)
    try:
        wait_running_with_progress(db, 1)
    finally:
        d.kill()                                   # SIGKILL: nothing gets cleaned up
    killed = db.value("SELECT max(id) FROM public.sync_logs")
    assert db.value("SELECT status FROM public.sync_logs WHERE id = %s", killed) == "running"
    assert integ(db)["products_cursor"] == cursor  # the dead run never moved it
    # The dead daemon's session is gone: the next run takes its lease over (--wait covers the
    # moment before its backend notices; test_lease.py shows this happens before expiry).
    sim.config(latency_ms=0)
    res = once(cfg, "--wait")
    assert res.rc == 0, res
    assert "closed 1 abandoned sync_logs row(s)" in res.err
    status, msg = db.sql("SELECT status, error_message FROM public.sync_logs WHERE id = %s",
                         killed)[0]
    assert status == "failed" and "abandoned" in msg
    log = kvsd.last_log(db)
    assert log["status"] == "success" and log["sync_type"] == "incremental"
    # pages the killed run committed stay (each was one transaction); the rest comes now
    assert 0 < log["products_created"] <= 10
    added = set(changed["added"]) & set(catalog_products(sim))  # units of others are not synced
    assert added and db.value("SELECT count(*) FROM public.products WHERE kiotviet_id = ANY(%s)",
                              list(added)) == len(added)
    check_products(db, sim)
    # deleted products the shop had are marked deleted (one added and deleted in between
    # was never stored)
    st = dict(db.sql("SELECT kiotviet_id, kiotviet_status FROM public.products"
                     " WHERE kiotviet_id = ANY(%s)", changed["deleted"]))
    assert len(st) >= len(set(changed["deleted"]) - set(changed["added"]))
    assert set(st.values()) == {"deleted"}
    assert not db.sql("SELECT 1 FROM public.sync_logs WHERE status = 'running'")
    assert integ(db)["products_cursor"] > cursor


# ---- backoff and recovery -----------------------------------------------------------------------

def test_repeated_failures_back_off_and_recover(db, sim, workdir):
    kvsd.setup_integration(db, sim, interval=1)
    give_small_jitter(db)
    cfg = config(db, workdir, kiotviet={"max_retries": 0}, sync={"max_backoff_minutes": 60})
    sim.faults([{"match": "/connect/token", "times": -1, "kind": "status", "status": 502}])
    for n in (1, 2, 3):
        res = once(cfg)
        assert res.rc == 1, res
        log = kvsd.last_log(db)
        assert log["status"] == "failed"
        assert log["error_details"]["consecutive_failures"] == n
        assert log["error_details"]["next_attempt_minutes"] == 2 ** n
    assert integ(db)["consecutive_failures"] == 3
    sim.clear_faults()
    # Three failures: the 1-minute interval is now 8 minutes. The last attempt "was" 7m57s ago,
    # so the daemon must wait about 3 s more (plus its jitter), not start at once.
    last = db.value("UPDATE public.third_party_integrations SET last_sync_at = now() -"
                    " interval '477 s' RETURNING last_sync_at")
    n_logs = len(logs(db))
    d = kvsd.Daemon(cfg)
    with watched(d):
        kvsd.wait_until(lambda: len(logs(db)) > n_logs and logs(db)[-1][5], timeout=20,
                        what="the backed-off run")
        assert len(logs(db)) == n_logs + 1
        # Not before its backed-off interval, by the database's clock (the lower bound); the
        # upper one leaves room for a loaded machine (ASan, two cores) yet is far below the
        # next interval (16 min) and the undoubled one's (1 min) is below the lower bound.
        started = db.value("SELECT max(started_at) FROM public.sync_logs")
        assert 479.7 <= (started - last).total_seconds() <= 480 + 3 + 10, (started, last)
        rc = d.stop()
    no_sanitizer_report(d.log())
    assert rc == 0
    assert logs(db)[-1][1] == "success"
    assert integ(db)["consecutive_failures"] == 0     # recovered by itself
    check_products(db, sim)


def test_reconciliation_marks_unreported_deletes(db, sim, workdir):
    kvsd.setup_integration(db, sim)
    cfg = config(db, workdir, sync={"reconcile_hours": 1})
    assert once(cfg).rc == 0
    # Deletes KiotViet does not report: they happened before the window the next incremental
    # run asks for (as if removedIds had been lost), so they are in no answer.
    gone = sim.mutate(delete=7)["deleted"]
    db.sql("UPDATE public.third_party_integrations SET products_cursor = now() + interval '1 hour'")
    assert once(cfg).rc == 0
    log = kvsd.last_log(db)
    assert log["sync_type"] == "incremental" and log["products_deactivated"] == 0
    assert db.value("SELECT count(*) FROM public.products WHERE kiotviet_id = ANY(%s)"
                    " AND kiotviet_status = 'deleted'", gone) == 0
    # An hour later the periodic full reconciliation catches them.
    db.sql("UPDATE public.third_party_integrations SET last_full_sync_at = now() - interval '61 min'")
    assert once(cfg).rc == 0
    log = kvsd.last_log(db)
    assert log["sync_type"] == "reconcile" and log["status"] == "success"
    assert log["products_deactivated"] == 7
    rows = db.sql("SELECT kiotviet_status, is_active FROM public.products WHERE kiotviet_id = ANY(%s)",
                  gone)
    assert len(rows) == 7 and set(rows) == {("deleted", False)}
    check_products(db, sim)


# ---- host clock jumps ---------------------------------------------------------------------------

# Offsets CLOCK_REALTIME (and time(), gettimeofday()) by the number of seconds in the file named
# by KVS_FAKE_OFFSET_FILE, read at every call so a test can jump the clock mid-run. Monotonic
# clocks are untouched, exactly as when an administrator or a broken NTP sets the time.
CLOCK_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static long offset_s(void)
{
    const char *f = getenv("KVS_FAKE_OFFSET_FILE");
    long v = 0;
    FILE *fp = f ? fopen(f, "re") : NULL;
    if (!fp) return 0;
    if (fscanf(fp, "%ld", &v) != 1) v = 0;
    fclose(fp);
    return v;
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
    static int (*real)(clockid_t, struct timespec *);
    if (!real) real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    int rc = real(id, ts);
    if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) ts->tv_sec += offset_s();
    return rc;
}

int gettimeofday(struct timeval *tv, void *tz)
{
    struct timespec ts;
    (void)tz;
    if (clock_gettime(CLOCK_REALTIME, &ts)) return -1;
    if (tv) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return 0;
}

time_t time(time_t *t)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (t) *t = ts.tv_sec;
    return ts.tv_sec;
}
"""


@pytest.fixture(scope="module")
def clock_shim(tmp_path_factory):
    d = tmp_path_factory.mktemp("clockshim")
    os.chmod(d, 0o755)
    src, lib = d / "shim.c", d / "libkvsclock.so"
    src.write_text(CLOCK_SHIM)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(lib), str(src), "-ldl"],
                   check=True)
    return lib


class HostClock:
    """The daemon's view of the wall clock: set(seconds) jumps it, also while it runs."""

    def __init__(self, lib, workdir):
        self.file = workdir / "clock-offset"
        self.set(0)
        self.env = {"LD_PRELOAD": str(lib), "KVS_FAKE_OFFSET_FILE": str(self.file),
                    # the ASan build wants its runtime first; the shim defines no allocator
                    "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") +
                    ":verify_asan_link_order=0"}

    def set(self, seconds):
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(str(int(seconds)))
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.file)


DAY = 86400


def test_clock_shim_moves_the_wall_clock_only(clock_shim, workdir):
    clock = HostClock(clock_shim, workdir)
    clock.set(3 * DAY)
    env = dict(os.environ, **clock.env)
    wall = int(subprocess.run(["date", "+%s"], env=env, capture_output=True, text=True,
                              check=True).stdout)
    assert abs(wall - (time.time() + 3 * DAY)) < 5
    mono = float(subprocess.run(["/usr/bin/python3", "-c", "import time; print(time.monotonic())"],
                                env=env, capture_output=True, text=True, check=True).stdout)
    assert abs(mono - time.monotonic()) < 5


def test_host_clock_jumps_change_no_cursor_token_or_reconcile(db, sim, workdir, clock_shim):
    kvsd.setup_integration(db, sim)
    clock = HostClock(clock_shim, workdir)
    cfg = config(db, workdir)
    # The host's clock is 3 days ahead: nothing it computes may land in the database.
    clock.set(3 * DAY)
    res = once(cfg, env=clock.env)
    assert res.rc == 0, res
    ok = db.value("SELECT products_cursor <= now() AND categories_cursor <= now() AND"
                  " products_cursor > now() - interval '5 min' AND"
                  " abs(extract(epoch from token_expires_at - now()) - 86400) < 60"
                  " FROM public.third_party_integrations WHERE name = 'kiotviet'")
    assert ok, integ(db)
    check_products(db, sim)
    # Still 3 days ahead: by this host's clock the daily reconciliation would be due; by the
    # database's it is not. Edits since the run are read incrementally.
    sim.mutate(edit=6)
    res = once(cfg, env=clock.env)
    assert res.rc == 0, res
    log = kvsd.last_log(db)
    assert log["sync_type"] == "incremental" and log["products_updated"] == 6
    check_products(db, sim)
    # Now 3 days behind: the stored token (valid ~24 h in the database's time) is still used,
    # and edits made now are still after the cursor.
    clock.set(-3 * DAY)
    sim.mutate(edit=4)
    res = once(cfg, env=clock.env)
    assert res.rc == 0, res
    log = kvsd.last_log(db)
    assert log["sync_type"] == "incremental" and log["products_updated"] == 4
    assert sim.stats("demoshop")["token_requests"] == 1
    check_products(db, sim)


def test_clock_jump_mid_run_keeps_token_and_retry_timers(db, sim, workdir, clock_shim):
    kvsd.setup_integration(db, sim)
    clock = HostClock(clock_shim, workdir)
    sim.config(latency_ms=200, token_ttl=900)   # usable 600 s with the 300 s margin
    cfg = config(db, workdir, sync={"page_size": 20, "pages_in_flight": 1})
    env = dict(os.environ, **clock.env)
    env.pop("DATABASE_URL", None)
    env.pop("NOTIFY_SOCKET", None)
    p = subprocess.Popen(kvsd.base_args() + ["-c", cfg, "--once"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_running_with_progress(db, 20)
        clock.set(2 * DAY)      # forward: a wall-clock token deadline would have passed
        sim.faults([{"match": "/products", "times": 1, "kind": "status", "status": 503}])
        kvsd.wait_until(lambda: sim.fault_list() and sim.fault_list()[0]["applied"] == 1,
                        timeout=10, what="the 503")
        time.sleep(0.4)         # its retry (50-100 ms later) has gone through
        clock.set(-2 * DAY)     # backward: a wall-clock timer would wait two days
        sim.faults([{"match": "/products", "times": 1, "kind": "status", "status": 503}])
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    no_sanitizer_report(err)
    assert p.returncode == 0, err[-3000:]  # within communicate's 60 s, not two days
    assert sim.stats("demoshop")["token_requests"] == 1
    delays = retry_delays(err)
    assert len(delays) == 2 and all(ms <= RETRY_BASE_MS for _, ms in delays), delays
    assert kvsd.last_log(db)["status"] == "success"
    check_products(db, sim)


def test_host_clock_jumps_neither_burst_nor_stall_the_schedule(db, sim, workdir, clock_shim):
    """The daemon's schedule is measured on the database's clock (how long ago last_sync_at
    was) and armed on the monotonic clock: the host's wall clock jumping hours forward neither
    fires a run early nor runs it again and again; jumping back does not stall it."""
    kvsd.setup_integration(db, sim, interval=1)
    jitter = scheduler_jitter_ms(give_small_jitter(db)) / 1000
    clock = HostClock(clock_shim, workdir)
    cfg = config(db, workdir, log={"level": "debug"})  # its line per poll

    def polls():
        return d.log().count("integrations read: ")

    def set_last_sync(ago_s):
        """last_sync_at = now() - ago_s: due (interval 1 min) 60 - ago_s s from now."""
        return db.value("UPDATE public.third_party_integrations SET last_sync_at ="
                        " now() - make_interval(secs => %s) WHERE name = 'kiotviet'"
                        " RETURNING last_sync_at", ago_s)

    def runs():
        return db.sql("SELECT l.id, l.status, l.started_at, l.completed_at IS NOT NULL"
                      " FROM public.sync_logs l ORDER BY l.id")

    def started_after(last, run):
        """Seconds between the last sync it was due from and the run's start (database time)."""
        return (run[2] - last).total_seconds()

    last = set_last_sync(57.5)
    d = kvsd.Daemon(cfg, env=clock.env)
    with watched(d):
        kvsd.wait_until(lambda: "ready:" in d.log(), timeout=10, what="the daemon ready")
        clock.set(5 * 3600)        # forward 5 h: by the host's clock it is long overdue
        kvsd.wait_until(lambda: runs() and runs()[-1][3], timeout=15, what="the first run")
        first = runs()
        assert len(first) == 1 and first[0][1] == "success", first
        # neither early nor late: a minute after last_sync_at, plus its jitter (the upper
        # bound with room for a loaded machine: an hours-off schedule is what it catches)
        assert 59.7 + jitter <= started_after(last, first[0]) <= 65 + jitter, first
        # no burst: the next run is a minute away whatever the host's clock says (a wall-clock
        # schedule ran it again within its jitter after the next poll): three polls later
        # (each a second apart, longer than the jitter), still one run
        mark = polls()
        kvsd.wait_until(lambda: polls() >= mark + 3, timeout=20, what="three more polls")
        assert runs() == first, runs()
        clock.set(-5 * 3600)       # back 5 h: by the host's clock the next run is hours away
        last = set_last_sync(58)   # due in 2 s by the database's clock
        kvsd.wait_until(lambda: len(runs()) == 2 and runs()[-1][3], timeout=10,
                        what="the run due while the clock is hours behind")
        second = runs()[-1]
        assert second[1] == "success"
        assert 59.7 + jitter <= started_after(last, second) <= 65 + jitter, second
        rc = d.stop()
    no_sanitizer_report(d.log())
    assert rc == 0
    assert len(runs()) == 2
    check_products(db, sim)
