"""Self-tests of the simulator's webhooks (tests/kvsim/webhooks.py): the management API and the
signed delivery of notifications on catalogue changes, with its options (retries, KiotViet's
stop on 4xx, duplicates, out-of-order delivery). A small HTTP receiver in the test stands in
for the daemon's listener."""

import hashlib
import hmac
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from kvsim.client import Sim  # noqa: E402

SECRET = "c2VjcmV0LWZvci10ZXN0cw=="


class Receiver:
    """Collects POSTs; answers with the next status of `statuses` (then 200)."""

    def __init__(self):
        self.got = []
        self.statuses = []
        self.cond = threading.Condition()
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.cond:
                    status = outer.statuses.pop(0) if outer.statuses else 200
                    outer.got.append({"path": self.path, "sig": self.headers["X-Hub-Signature"],
                                      "body": body, "status": status})
                    outer.cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:%d/webhooks/kiotviet?noecho" % self.srv.server_address[1]

    def wait(self, n, timeout=20):
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.got) >= n, timeout), self.got
            return [json.loads(g["body"]) for g in self.got]

    def wait_type(self, typ, timeout=20):
        def seen():
            return any(json.loads(g["body"])["Notifications"][0]["Action"].startswith(typ + ".")
                       for g in self.got)
        with self.cond:
            assert self.cond.wait_for(seen, timeout), self.got
            return [json.loads(g["body"]) for g in self.got]

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture(scope="module")
def sim():
    with Sim(products=50, seed=3) as s:
        yield s


@pytest.fixture
def rx(sim):
    sim.reset()
    r = Receiver()
    yield r
    r.close()


def register(sim, typ, url, secret=SECRET):
    st, out = sim.api_call("POST", "/webhooks", {"Webhook": {
        "Type": typ, "Url": url, "IsActive": True, "Description": "t", "Secret": secret}})
    assert st == 200, out
    return out


def test_management_api(sim, rx):
    h = register(sim, "product.update", rx.url)
    assert h["type"] == "product.update" and h["url"] == rx.url and h["isActive"] is True
    assert h["retailerId"] == 500712345 and "secret" not in {k.lower() for k in h}
    st, lst = sim.api_call("GET", "/webhooks")
    assert st == 200 and lst["total"] == 1 and lst["data"][0]["id"] == h["id"]
    st, one = sim.api_call("GET", "/webhooks/%d" % h["id"])
    assert st == 200 and one["id"] == h["id"]
    assert sim.webhooks()[0]["secret"] == SECRET
    st, out = sim.api_call("DELETE", "/webhooks/%d" % h["id"])
    assert st == 200 and "message" in out
    assert sim.api_call("GET", "/webhooks/%d" % h["id"])[0] == 404
    assert sim.api_call("GET", "/webhooks")[1]["total"] == 0
    st, _ = sim.api_call("POST", "/webhooks", {"Webhook": {"Type": "nope", "Url": rx.url}})
    assert st == 400


def test_signed_notifications_on_changes(sim, rx):
    for t in ("product.update", "stock.update", "product.delete", "category.update"):
        register(sim, t, rx.url)
    pid = sim.mutate(edit=1)["edited"][0]
    sim.mutate(sell=[pid])
    cid = sim.mutate(edit_categories=1)["edited_categories"][0]
    gone = sim.mutate(delete=1)["deleted"][0]
    for t in ("product.update", "stock.update", "category.update"):
        rx.wait_type(t)
    bodies = rx.wait_type("product.delete")
    for g in rx.got:
        assert g["path"].endswith("?noecho")
        want = hmac.new(SECRET.encode(), g["body"], hashlib.sha256).hexdigest()
        assert g["sig"] == "sha1=" + want
    by = {}
    for b in bodies:
        assert set(b) == {"Id", "Attempt", "Notifications"} and b["Attempt"] == 1
        n = b["Notifications"][0]
        typ, _, retailer = n["Action"].rpartition(".")
        assert retailer == "500712345"
        by.setdefault(typ, []).append(n["Data"])
    p = by["product.update"][0][0]
    assert p["Id"] == pid and p["__type"].startswith("KiotViet.OmniChannelCore")
    assert "isActive" in p and "IsActive" not in p and "ModifiedDate" in p and "Code" in p
    assert all("OnHand" in i and "BranchId" in i for i in p["Inventories"])
    s = by["stock.update"][0][0]
    assert s["ProductId"] == pid and "OnHand" in s and "isActive" in s
    assert any(d[0]["Id"] == cid for d in by["category.update"])
    assert by["product.delete"] == [[gone]]


def test_retry_then_stop_on_404(sim, rx):
    register(sim, "product.update", rx.url)
    sim.webhook_config(retry_delay_ms=10)
    rx.statuses = [500, 503]
    sim.mutate(edit=1)
    bodies = rx.wait(3)
    assert [b["Attempt"] for b in bodies] == [1, 2, 3]
    assert len({b["Id"] for b in bodies}) == 1
    rx.statuses = [404]
    sim.mutate(edit=1)
    rx.wait(4)
    deadline = time.monotonic() + 10  # KiotViet stops sending after a 404
    while sim.webhooks()[0]["isActive"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim.webhooks()[0]["isActive"] is False
    sim.mutate(edit=1)
    assert sim.webhook_log()["pending"] == 0  # nothing queued for an inactive hook
    assert len(rx.got) == 4


def test_duplicates_and_out_of_order(sim, rx):
    register(sim, "product.update", rx.url)
    sim.webhook_config(duplicates=True)
    sim.mutate(edit=1)
    a, b = rx.wait(2)
    assert a == b
    sim.webhook_config(duplicates=False, out_of_order=True, batch=2)
    pid = sim.catalog()["products"][0]["id"]
    sim.mutate(set={"id": pid, "fields": {"name": "first"}})
    sim.mutate(set={"id": pid, "fields": {"name": "second"}})
    got = rx.wait(4)[2:]
    assert [g["Notifications"][0]["Data"][0]["Name"] for g in got] == ["second", "first"]
    deadline = time.monotonic() + 10  # the answer is logged just after the receiver has it
    while True:
        log = sim.webhook_log()
        if all(n["attempts"] for n in log["notifications"]) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert log["pending"] == 0 and len(log["notifications"]) == 3
    assert all(n["changed_at"] > 0 and n["attempts"] for n in log["notifications"])
