"""Webhooks applied (issue 14): the simulator delivers signed notifications of catalogue changes;
the daemon applies them through the same mapping and writer as its polls, once each, never an
older version over a newer one, and loses none when it dies after storing them.

`Inbox` stands in for the listener where a test needs to hold notifications back (out of order,
duplicates): it receives the simulator's deliveries and stores them in kiotviet_webhook_events as
the listener does (ON CONFLICT DO NOTHING on the envelope Id). Every wait is for a row or an
event, never a time window.
"""

import json
import re
import sys
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import kvsd  # noqa: E402
from kvsd import wait_until  # noqa: E402

TYPES = ("product.update", "product.delete", "stock.update", "category.update",
         "category.delete")


class Inbox:
    """An HTTP endpoint that stores what the simulator delivers (or keeps it, with hold=True)."""

    def __init__(self, db, integ_id):
        self.db, self.integ_id = db, integ_id
        self.hold = False
        self.held = []
        self.lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.lock:
                    if outer.hold:
                        outer.held.append(body)
                    else:
                        outer.store(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:%d/webhooks/kiotviet" % self.srv.server_address[1]

    def store(self, body, event_id=None):
        env = json.loads(body)
        types = ",".join(sorted({n["Action"].rsplit(".", 1)[0] for n in env["Notifications"]}))
        self.db.sql("INSERT INTO public.kiotviet_webhook_events (integration_id, event_id,"
                    " attempt, types, body) VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT (integration_id, event_id) DO NOTHING",
                    self.integ_id, event_id or env["Id"], env.get("Attempt", 1), types,
                    body.decode())

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def register(sim, url, types=TYPES):
    for t in types:
        st, out = sim.api_call("POST", "/webhooks", {"Webhook": {
            "Type": t, "Url": url + "?noecho", "IsActive": True, "Secret": "c2VjcmV0"}})
        assert st == 200, out


def events(db):
    return db.sql("SELECT event_id, types, processed_at IS NOT NULL, result"
                  " FROM public.kiotviet_webhook_events ORDER BY id")


def delivered(sim):
    """How many notifications the simulator has delivered, once none is pending."""
    log = sim.webhook_log()
    done = [n for n in log["notifications"] if any(a["status"] == 200 for a in n["attempts"])]
    return not log["pending"] and len(done) == len(log["notifications"]) and len(done)


def all_processed(db, n):
    rows = events(db)
    return len(rows) >= n and all(r[2] for r in rows) and rows


def product(db, kid):
    """The product's row as a dict (the shapes differ: bigint has no stock or is_active)."""
    return db.value("SELECT to_jsonb(p) FROM public.products p WHERE kiotviet_id = %s", kid)


@pytest.fixture
def shop(shop_db, make_sim, workdir):
    """A synced shop (one full run), its daemon polling every second, and an Inbox."""
    sim = make_sim(products=30, seed=5)
    integ = kvsd.setup_integration(shop_db, sim)
    cfg = kvsd.write_config(workdir / "kvs.conf", shop_db.dsn, sync={"poll_interval": 1},
                            log={"level": "info"})
    assert kvsd.run_once(cfg).rc == 0
    d = kvsd.Daemon(cfg)
    inbox = Inbox(shop_db, integ)
    yield shop_db, sim, inbox, d
    inbox.close()
    d.stop()


def test_edit_stock_delete_category_arrive_and_are_stored(shop):
    db, sim, inbox, d = shop
    register(sim, inbox.url)
    cat = sim.catalog()
    p1, p2, p3 = (p["id"] for p in cat["products"][:3])
    sim.reset_stats()
    sim.mutate(set={"id": p1, "fields": {"name": "Nhẫn sửa qua webhook"}})
    sim.mutate(set_stock={"id": p2, "onHand": 7})
    sim.mutate(delete=[p3])
    cid = sim.mutate(set_category={"id": cat["categories"][0]["categoryId"],
                                   "fields": {"categoryName": "Nhóm đổi tên"}})["set_category"]
    n = wait_until(lambda: delivered(sim), what="deliveries")
    assert n == 4
    rows = wait_until(lambda: all_processed(db, n), timeout=60, what="events applied")
    assert {r[3] for r in rows} == {"applied"}, (rows, d.log())
    assert product(db, p1)["name"] == "Nhẫn sửa qua webhook"
    truth = {p["id"]: p for p in sim.catalog()["products"]}
    if "stock_quantity" in product(db, p2):
        want = sum(Decimal(str(i["onHand"])) for i in truth[p2]["inventories"])
        assert Decimal(str(product(db, p2)["stock_quantity"])) == want
    assert product(db, p3)["kiotviet_status"] == "deleted"
    assert product(db, p3).get("is_active", False) is False
    assert db.value("SELECT name FROM public.categories WHERE kiotviet_id = %s", cid) == \
        "Nhóm đổi tên"
    # The edit and the category change cost no GET; the stock change one refetch.
    st = sim.stats()
    assert st["gets"] <= 1, st
    log = kvsd.last_log(db)
    assert log["sync_type"] == "webhook" and log["status"] == "success", log
    assert re.search(r"webhook events: \d+ applied", d.log())


def test_duplicate_and_older_notification_change_nothing(shop):
    db, sim, inbox, d = shop
    register(sim, inbox.url, ("product.update",))
    pid = sim.catalog()["products"][0]["id"]
    inbox.hold = True
    sim.mutate(set={"id": pid, "fields": {"name": "older"}})
    sim.mutate(set={"id": pid, "fields": {"name": "newer"}})
    wait_until(lambda: len(inbox.held) == 2, what="two deliveries")
    older, newer = inbox.held
    inbox.store(newer)
    wait_until(lambda: all_processed(db, 1), what="the newer version applied")
    assert product(db, pid)["name"] == "newer"
    before = db.sql("SELECT updated_at FROM public.products WHERE kiotviet_id = %s", pid)
    inbox.store(older)                               # out of order: older, later
    inbox.store(newer, event_id="redelivered-copy")  # the same version again, another Id
    inbox.store(newer)                               # the same Id again: one row
    rows = wait_until(lambda: all_processed(db, 3), what="the late ones processed")
    assert len(rows) == 3
    assert [r[3] for r in rows] == ["applied", "stale", "duplicate"], rows
    assert product(db, pid)["name"] == "newer"
    assert db.sql("SELECT updated_at FROM public.products WHERE kiotviet_id = %s", pid) == before


def test_unprocessed_events_left_by_a_dead_daemon_are_applied_on_restart(shop, workdir):
    db, sim, inbox, d = shop
    d.kill()  # SIGKILL: whatever was stored and not yet applied stays in the inbox
    register(sim, inbox.url, ("product.update",))
    pid = sim.catalog()["products"][1]["id"]
    sim.mutate(set={"id": pid, "fields": {"name": "stored while down"}})
    wait_until(lambda: len(events(db)) == 1, what="the notification stored")
    assert not events(db)[0][2]
    d2 = kvsd.Daemon(str(workdir / "kvs.conf"))
    try:
        rows = wait_until(lambda: all_processed(db, 1), what="applied after the restart")
        assert rows[0][3] == "applied"
        assert product(db, pid)["name"] == "stored while down"
    finally:
        d2.stop()
