"""The webhook listener (issue 14), against the real binary and a real PostgreSQL: KiotViet's
signed notifications are stored in the inbox before they are answered; bad signatures, unknown
integrations, oversize bodies and garbage change nothing (and are counted); /metrics and
/healthz answer, /healthz with 503 once the database is gone; a listener configured without
migration 004 stops the daemon at start."""

import hashlib
import hmac
import http.client
import json
import re
import signal
import socket
import uuid

import pytest

import pgharness
from kvsd import Daemon, listen_port, setup_integration, wait_until, write_config

SECRET = "wh-Secret-9f3a7c1e"
PRODUCT_BODY = {
    "Id": None, "Attempt": 1,
    "Notifications": [{"Action": "product.update.500712345", "Data": [{
        "__type": "KiotViet.OmniChannelCore.Api.Shared.Model.WebhookProductUpdateRes, "
                  "KiotViet.OmniChannelCore.Api.Shared",
        "Id": 30118801, "RetailerId": 500712345, "Code": "NC18K-012",
        "Name": "Nhẫn cưới vàng 18K trơn", "BasePrice": 7120000, "isActive": True}]}],
}


def envelope(event_id=None, attempt=1, action="product.update.500712345"):
    b = json.loads(json.dumps(PRODUCT_BODY))
    b["Id"] = event_id or str(uuid.uuid4())
    b["Attempt"] = attempt
    b["Notifications"][0]["Action"] = action
    return json.dumps(b, ensure_ascii=False).encode()


def sign(body, secret=SECRET, prefix="sha1="):
    return prefix + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def request(port, method, path, body=None, headers=None, timeout=30):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def post(port, body, signature=None, name="kiotviet", query="?noecho"):
    h = {"Content-Type": "application/json"}
    if signature is not None:
        h["X-Hub-Signature"] = signature
    return request(port, "POST", f"/webhooks/{name}{query}", body, h)


def connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=10).close()
        return True
    except OSError:
        return False


def metric(text, line_start):
    """The value of the sample whose line starts with line_start (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0


def inbox(db):
    return db.sql("SELECT integration_id::text, event_id, attempt, types, body, processed_at "
                  "FROM kiotviet_webhook_events ORDER BY id")


@pytest.fixture
def hooked(db, workdir, make_sim):
    """A daemon with a webhook listener on a free port, the integration pointed at a simulator
    and given a webhook secret. Yields (daemon, port, integration id)."""
    sim = make_sim()
    iid = setup_integration(db, sim)
    db.sql("UPDATE third_party_integrations SET webhook_secret = %s WHERE id = %s", SECRET, iid)
    cfg = write_config(workdir / "k.conf", db.dsn, webhook={"listen": "127.0.0.1:0"},
                       sync={"poll_interval": 1})
    d = Daemon(cfg)
    try:
        yield d, listen_port(d), iid
    finally:
        rc = d.stop()
    # A clean stop with requests served: listeners, suspended requests and the database
    # connection closed in order (under ASan a leak or a bad free would show here).
    assert rc == 0 and "Sanitizer" not in d.log(), d.log()[-3000:]


def test_signed_notification_is_stored_before_the_answer(db, hooked):
    d, port, iid = hooked
    bodies = []
    for prefix in ("sha1=", "sha256=", ""):
        body = envelope()
        status, text = post(port, body, sign(body, prefix=prefix))
        # The row is there the moment the answer is: it was committed before it.
        assert (status, text) == (200, "stored\n")
        assert len(inbox(db)) == len(bodies) + 1
        bodies.append(body)
    # Upper-case hex and a query string other than ?noecho are accepted too.
    body = envelope(action="stock.update.500712345")
    assert post(port, body, sign(body).upper().replace("SHA1=", "sha1="), query="?x=1")[0] == 200
    bodies.append(body)
    rows = inbox(db)
    assert [r[4].encode() for r in rows] == bodies       # the raw body, byte for byte
    # (processed_at: the inbox run may already have applied them; test_webhook_apply.py)
    assert all(r[0] == iid and r[2] == 1 for r in rows)
    assert [r[1] for r in rows] == [json.loads(b)["Id"] for b in bodies]
    assert [r[3] for r in rows] == ["product.update"] * 3 + ["stock.update"]
    assert SECRET not in d.log()


def test_duplicate_id_is_stored_once(db, hooked):
    d, port, _ = hooked
    eid = str(uuid.uuid4())
    first, again = envelope(eid, attempt=1), envelope(eid, attempt=2)
    assert post(port, first, sign(first)) == (200, "stored\n")
    assert post(port, again, sign(again)) == (200, "stored already\n")
    assert [(r[1], r[2]) for r in inbox(db)] == [(eid, 1)]
    # An envelope without an Id is keyed by its body's SHA-256: a redelivery is one row too.
    body = json.dumps({"Notifications": [{"Action": "category.delete.1", "Data": [5]}]}).encode()
    assert post(port, body, sign(body))[0] == 200
    assert post(port, body, sign(body)) == (200, "stored already\n")
    assert inbox(db)[1][1:4] == (hashlib.sha256(body).hexdigest(), 1, "category.delete")
    _, text = request(port, "GET", "/metrics")
    assert metric(text, 'kiotviet_webhook_events_total{integration="kiotviet",'
                        'type="product.update",result="duplicate"}') == 1
    assert metric(text, 'kiotviet_webhook_events_total{integration="kiotviet",'
                        'type="category.delete",result="duplicate"}') == 1


def test_bad_signature_and_unknown_integration_change_nothing(db, hooked):
    d, port, _ = hooked
    body = envelope()
    wrong = [sign(body, secret="not-the-secret"), None, "sha1=" + "0" * 64, "sha1=abc",
             sign(body)[:-1] + "g", sign(body + b" ")]
    for s in wrong:
        status, text = post(port, body, s)
        # Not one of 400/401/403/404/405, after which KiotViet stops delivering.
        assert (status, text.startswith("not stored")) == (202, True), s
    db.sql("INSERT INTO third_party_integrations (name, client_id, client_secret, retailer, "
           "webhook_secret) VALUES ('kiotviet_other', 'c', 's', 'r', %s)", SECRET)
    for name in ("nosuch", "kiotviet_other", "kiotviet%2Fx"):   # unknown, disabled, a slash
        assert post(port, body, sign(body), name=name)[0] == 202
    db.sql("UPDATE third_party_integrations SET webhook_secret = NULL WHERE name = 'kiotviet'")
    assert post(port, body, sign(body))[0] == 202                 # no secret: not accepted
    assert inbox(db) == []
    _, text = request(port, "GET", "/metrics")
    assert metric(text, 'kiotviet_webhook_events_total{integration="kiotviet",type="",'
                        'result="bad_signature"}') == len(wrong)
    assert metric(text, 'kiotviet_webhook_events_total{integration="",type="",'
                        'result="unknown_integration"}') == 4
    log = d.log()
    assert SECRET not in log and sign(body)[5:] not in log
    # Rate-limited: 10 rejections within seconds are not 10 lines.
    assert 1 <= len(re.findall(r"not stored", log)) < 10


def test_oversize_body_and_garbage_are_refused_and_the_listener_survives(db, hooked):
    d, port, _ = hooked
    big = b"{" + b" " * (1024 * 1024) + b"}"
    # Refused on its Content-Length, before the body is read (the client may not even get to
    # send it all: the server answers and closes).
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(b"POST /webhooks/kiotviet HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
              b"X-Hub-Signature: %s\r\n\r\n" % (len(big), sign(big).encode()))
    assert s.recv(65536).startswith(b"HTTP/1.1 413 ")
    s.close()
    # The same without Content-Length (chunked): refused once past the cap.
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.putrequest("POST", "/webhooks/kiotviet")
    c.putheader("Transfer-Encoding", "chunked")
    c.putheader("X-Hub-Signature", sign(big))
    c.endheaders()
    try:
        for i in range(0, len(big), 65536):
            part = big[i:i + 65536]
            c.send(b"%x\r\n%s\r\n" % (len(part), part))
        c.send(b"0\r\n\r\n")
        assert c.getresponse().status == 413
    except (ConnectionError, http.client.HTTPException):
        pass    # or the connection is closed on it: either way nothing is stored
    finally:
        c.close()
    for junk in (b"\x00\xff" * 500 + b"\r\n\r\n", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
                 b"POST /webhooks/kiotviet HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                 b"POST /webhooks/kiotviet HTTP/1.1\r\nHost: x\r\nContent-Len"):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(junk)
        try:    # the server may have closed it already, on the garbage it read
            s.shutdown(socket.SHUT_WR)
            s.recv(65536)
        except OSError:
            pass
        s.close()
    # Signed garbage (not JSON) is stored as it is: it came from KiotViet.
    junk = b"\x01not json"
    assert post(port, junk, sign(junk)) == (200, "stored\n")
    # Still serving, and only the signed body was stored.
    body = envelope()
    assert post(port, body, sign(body)) == (200, "stored\n")
    assert [r[3] for r in inbox(db)] == ["", "product.update"]
    assert d.proc.poll() is None
    # Non-webhook methods and paths: KiotViet's own (GET echo check) answered 200.
    assert request(port, "GET", "/webhooks/kiotviet?echo=abc123") == (200, "abc123")
    assert request(port, "DELETE", "/webhooks/kiotviet")[0] == 405
    assert request(port, "GET", "/nothing")[0] == 404


def test_metrics_and_healthz(db, hooked):
    d, port, _ = hooked
    wait_until(lambda: db.value("SELECT count(*) FROM sync_logs WHERE status = 'success'") >= 1,
               timeout=60, what="a first successful run")
    status, text = request(port, "GET", "/metrics")
    assert status == 200
    for family, kind in (("kiotviet_sync_runs_total", "counter"),
                         ("kiotviet_sync_last_success_timestamp_seconds", "gauge"),
                         ("kiotviet_sync_rows_written_total", "counter"),
                         ("kiotviet_api_requests_total", "counter"),
                         ("kiotviet_api_get_budget_left", "gauge"),
                         ("kiotviet_webhook_events_total", "counter"),
                         ("kiotviet_change_to_row_seconds", "histogram")):
        assert f"# TYPE {family} {kind}\n" in text, family
    # The run, its rows and its requests were counted where they happened (sync, kiotviet).
    wait_until(lambda: metric(request(port, "GET", "/metrics")[1],
                              'kiotviet_sync_runs_total{integration="kiotviet",status="success"}')
               >= 1, timeout=30, what="the run in /metrics")
    text = request(port, "GET", "/metrics")[1]
    assert metric(text, 'kiotviet_sync_rows_written_total{integration="kiotviet"}') > 0
    assert metric(text, 'kiotviet_api_requests_total{integration="kiotviet",code="200"}') >= 2
    assert 0 < metric(text, 'kiotviet_api_get_budget_left{integration="kiotviet"}') < 4500
    assert metric(text, 'kiotviet_sync_last_success_timestamp_seconds{integration="kiotviet"}') > 1.7e9
    assert SECRET not in text
    assert request(port, "GET", "/healthz") == (200, "ok\n")
    assert request(port, "POST", "/healthz")[0] == 405


def test_separate_metrics_listener_and_reload(db, workdir, make_sim):
    sim = make_sim()
    iid = setup_integration(db, sim)
    db.sql("UPDATE third_party_integrations SET webhook_secret = %s WHERE id = %s", SECRET, iid)
    cfg = write_config(workdir / "k.conf", db.dsn, webhook={"listen": "127.0.0.1:0"},
                       metrics={"listen": "127.0.0.1:0"})
    d = Daemon(cfg)
    try:
        hook, met = listen_port(d), listen_port(d, "metrics")
        assert request(met, "GET", "/metrics")[0] == 200
        assert request(met, "GET", "/healthz") == (200, "ok\n")
        assert request(hook, "GET", "/metrics")[0] == 404       # not on the public one
        body = envelope()
        assert post(met, body, sign(body))[0] == 404            # no webhooks on the metrics one
        assert post(hook, body, sign(body))[0] == 200
        # A reload to a port that is taken keeps the old listener.
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        write_config(workdir / "k.conf", db.dsn,
                     webhook={"listen": f"127.0.0.1:{taken.getsockname()[1]}"},
                     metrics={"listen": "127.0.0.1:0"})
        d.signal(signal.SIGHUP)
        wait_until(lambda: "listener keeps its old address" in d.log(), timeout=30,
                   what="the failed reload")
        body = envelope()
        assert post(hook, body, sign(body))[0] == 200
        taken.close()
        # A reload to a free address moves the listener there (the old port stops answering).
        free = socket.socket()
        free.bind(("127.0.0.1", 0))
        new_port = free.getsockname()[1]
        free.close()
        write_config(workdir / "k.conf", db.dsn, webhook={"listen": f"127.0.0.1:{new_port}"},
                     metrics={"listen": "127.0.0.1:0"})
        d.signal(signal.SIGHUP)
        wait_until(lambda: f"(port {new_port})" in d.log(), timeout=30, what="the new listener")
        body = envelope()
        assert post(new_port, body, sign(body))[0] == 200
        wait_until(lambda: not connects(hook), timeout=30, what="the old listener to close")
        assert d.proc.poll() is None
    finally:
        d.stop()


def test_healthz_and_webhooks_answer_503_when_the_database_is_gone(workdir):
    cluster = pgharness.PgCluster.start()
    d = None
    try:
        db = pgharness.new_shop_database(cluster, "uuid")
        db.sql("UPDATE third_party_integrations SET webhook_secret = %s, sync_enabled = true, "
               "api_url = 'http://127.0.0.1:1', token_url = 'http://127.0.0.1:1/t', "
               "client_id = 'c', client_secret = 's', retailer = 'r' WHERE name = 'kiotviet'",
               SECRET)
        cfg = write_config(workdir / "k.conf", db.dsn, webhook={"listen": "127.0.0.1:0"})
        d = Daemon(cfg)
        port = listen_port(d)
        assert request(port, "GET", "/healthz") == (200, "ok\n")
        db.conn.close()
        cluster.stop()
        assert request(port, "GET", "/healthz") == (503, "database unreachable\n")
        body = envelope()
        status, text = post(port, body, sign(body))
        assert status == 503 and "retry" in text        # KiotViet delivers it again later
        _, text = request(port, "GET", "/metrics")
        assert metric(text, 'kiotviet_webhook_events_total{integration="",type="",'
                            'result="error"}') == 1
        assert d.proc.poll() is None
    finally:
        if d:
            d.stop()
        cluster.stop()


def test_listener_without_migration_004_stops_the_daemon(fresh_db, workdir):
    fresh_db.run_file(pgharness.SHOP_SCHEMAS["uuid"])
    for p in pgharness.migration_files():
        if not p.name.startswith("004"):
            fresh_db.run_file(p)
    cfg = write_config(workdir / "k.conf", fresh_db.dsn, webhook={"listen": "127.0.0.1:0"})
    d = Daemon(cfg)
    try:
        d.proc.wait(60)
    finally:
        rc = d.stop()
    assert rc == 78
    assert "apply db/migrations/004_webhooks.sql" in d.log()


def test_connection_cap_and_idle_timeout(db, hooked):
    d, port, _ = hooked
    idle = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(64)]
    try:
        # With 64 connections open the 65th waits (MHD stops accepting); it is served once the
        # server has closed idle ones (no request line within the 10 s timeout). Order of events,
        # not a time window: when its answer arrives, some idle one has been closed already.
        extra = socket.create_connection(("127.0.0.1", port), timeout=120)
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert extra.recv(65536).startswith(b"HTTP/1.1 200 ")
        extra.close()
        closed = 0
        for s in idle:
            s.setblocking(False)
            try:
                closed += s.recv(65536) == b""
            except BlockingIOError:
                pass
            except ConnectionResetError:
                closed += 1
        assert closed >= 1
        for s in idle:       # and every idle one is closed by the server in the end
            s.settimeout(60)
            try:
                assert s.recv(65536) == b""
            except ConnectionResetError:
                pass
    finally:
        for s in idle:
            s.close()
    assert request(port, "GET", "/healthz") == (200, "ok\n")
