"""Webhooks applied (issue 14), end to end: the simulator delivers signed notifications of
catalogue changes to the daemon's listener, which stores them; the daemon applies them through
the same mapping and writer as its polls, once each, never an older version over a newer one,
and loses none when it is killed after answering. Every wait is for a row or an event, never a
time window.
"""

import json
import re
import sys
import urllib.request
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import kvsd  # noqa: E402
from kvsd import wait_until  # noqa: E402

TYPES = ("product.update", "product.delete", "stock.update", "category.update",
         "category.delete")
SECRET = "d2ViaG9vay1zZWNyZXQtZm9yLXRlc3Rz"


def store_copy(db, integ_id, body, event_id):
    """Stores a body as the listener would, under another envelope Id (a redelivery KiotViet
    numbered anew)."""
    env = json.loads(body)
    db.sql("INSERT INTO public.kiotviet_webhook_events (integration_id, event_id, attempt, types,"
           " body) VALUES (%s, %s, 1, 'product.update', %s)", integ_id, event_id, body)
    return env


def register(sim, url, types=TYPES):
    for t in types:
        st, out = sim.api_call("POST", "/webhooks", {"Webhook": {
            "Type": t, "Url": url + "?noecho", "IsActive": True, "Secret": SECRET}})
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


class Shop:
    """A synced shop (one full run) and its daemon with a webhook listener on a free port."""

    def __init__(self, db, sim, workdir):
        self.db, self.sim = db, sim
        self.integ = kvsd.setup_integration(db, sim)
        db.sql("UPDATE public.third_party_integrations SET webhook_secret = %s WHERE id = %s",
               SECRET, self.integ)
        self.cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn, sync={"poll_interval": 1,
                                                                 "lease_seconds": 5},
                                     webhook={"listen": "127.0.0.1:0"}, log={"level": "info"})
        assert kvsd.run_once(self.cfg).rc == 0
        self.start()

    def start(self):
        self.d = kvsd.Daemon(self.cfg)
        self.url = "http://127.0.0.1:%d/webhooks/kiotviet" % kvsd.listen_port(self.d)


@pytest.fixture
def shop(shop_db, make_sim, workdir):
    sh = Shop(shop_db, make_sim(products=30, seed=5), workdir)
    yield sh
    sh.d.stop()


def test_edit_stock_delete_category_arrive_and_are_stored(shop):
    db, sim, d = shop.db, shop.sim, shop.d
    register(sim, shop.url)
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
    # The events are marked applied in the run's last write; its sync_logs row is closed
    # just after, by the run's end: wait for that, not for the events.
    log = wait_until(lambda: (lambda l: l if l and l["status"] != "running" else None)(
        kvsd.last_log(db)), timeout=60, what="the webhook run's end")
    assert log["sync_type"] == "webhook" and log["status"] == "success", log
    assert re.search(r"webhook events: \d+ applied", d.log())
    # Counted: events by type and result, and the change-to-row histogram.
    with urllib.request.urlopen(shop.url.replace("/webhooks/kiotviet", "/metrics")) as r:
        text = r.read().decode()
    applied = [ln for ln in text.splitlines() if ln.startswith("kiotviet_webhook_events_total{")
               and 'type="product.update"' in ln and 'result="applied"' in ln]
    assert applied and float(applied[0].rsplit(" ", 1)[1]) >= 1, text
    assert re.search(r"^kiotviet_change_to_row_seconds_count(\{[^}]*\})? [1-9]", text, re.M), text


def test_duplicate_and_older_notification_change_nothing(shop):
    db, sim = shop.db, shop.sim
    register(sim, shop.url, ("product.update",))
    pid = sim.catalog()["products"][0]["id"]
    # Each notification twice (same Id), the newer of each pair first.
    sim.webhook_config(duplicates=True, out_of_order=True, batch=2)
    sim.mutate(set={"id": pid, "fields": {"name": "older"}})
    sim.mutate(set={"id": pid, "fields": {"name": "newer"}})
    assert wait_until(lambda: delivered(sim), what="deliveries") == 2
    rows = wait_until(lambda: all_processed(db, 2), what="both applied or judged")
    assert len(rows) == 2  # the duplicates (same Id) were stored once
    assert sorted(r[3] for r in rows) == ["applied", "stale"], rows
    assert product(db, pid)["name"] == "newer"
    before = product(db, pid)["updated_at"]
    # The newer version again under another Id: a duplicate, nothing written.
    body = db.value("SELECT body FROM public.kiotviet_webhook_events WHERE result = 'applied'")
    store_copy(db, shop.integ, body, "redelivered-copy")
    rows = wait_until(lambda: all_processed(db, 3), what="the copy processed")
    assert rows[2][3] == "duplicate", rows
    assert product(db, pid)["name"] == "newer" and product(db, pid)["updated_at"] == before


def webhook_runs_closed(db):
    """The webhook runs' sync_logs rows, once none is still running."""
    rows = db.sql("SELECT status FROM public.sync_logs WHERE sync_type = 'webhook'")
    return rows and all(r[0] != "running" for r in rows) and rows


def kv_local(text):
    """A lastModifiedFrom value (KiotViet's local time, up to 7 fraction digits)."""
    head, _, frac = text.partition(".")
    return datetime.fromisoformat(head + ("." + frac[:6] if frac else ""))


def sell_burst(db, sim, sales, total):
    """Counter sales (product ids; one id twice is two sales of it), their notifications
    delivered back to back once all are made; waits until the inbox holds `total` events, all
    processed."""
    sim.webhook_config(paused=True)
    for pid in sales:
        sim.mutate(sell=[pid])
    sim.reset_stats()
    sim.webhook_config(paused=False)
    wait_until(lambda: delivered(sim), what="deliveries")
    rows = wait_until(lambda: all_processed(db, total), timeout=60, what="the sales applied")
    # A second sale of a product in the batch is a duplicate of the first's stock change.
    results = {r[3] for r in rows[-len(sales):]}
    assert "applied" in results and results <= {"applied", "duplicate"}, rows


def stock_matches(db, sim, pids):
    """The stored stock of each product, by branch (and its total where the shop has the
    column), is the simulator's."""
    truth = {p["id"]: p for p in sim.catalog()["products"]}
    for pid in pids:
        want = {i["branchId"]: Decimal(str(i["onHand"])) for i in truth[pid]["inventories"]}
        got = dict(db.sql("SELECT branch_kiotviet_id, on_hand FROM public.kiotviet_product_stock"
                          " WHERE product_kiotviet_id = %s", pid))
        assert got == want, (pid, got, want)
        if "stock_quantity" in product(db, pid):
            assert Decimal(str(product(db, pid)["stock_quantity"])) == sum(want.values()), pid


def test_stock_notifications_applied_from_their_figures_without_a_get(shop):
    """Ten counter sales of ten products, notified back to back: the listener's kicks are
    gathered into a few inbox runs, which write each product's branch rows and total from the
    notifications' own figures (first deliveries, one per branch, the other branches stored):
    no GET at all."""
    db, sim = shop.db, shop.sim
    register(sim, shop.url, ("stock.update",))
    sold = [p["id"] for p in sim.catalog()["products"] if p.get("inventories")][:10]
    sell_burst(db, sim, sold, 10)
    runs = wait_until(lambda: webhook_runs_closed(db), timeout=60, what="the runs' ends")
    st = sim.stats()
    assert len(runs) <= 3, (runs, shop.d.log())
    assert st["gets"] == 0, st
    stock_matches(db, sim, sold)
    assert re.search(r"\d+ product\(s\) of stock notifications applied from their figures",
                     shop.d.log())


def test_stock_notifications_of_unsure_order_are_read(shop):
    """Two sales of one product in one burst (which notification is newer is unknown) and a
    redelivery (Attempt 2: it may be older than what is stored) are not applied from their
    figures: one GET /productOnHands reads the products' stock. A later burst's read starts
    where the earlier complete read ended (less 1 s), not 15 s before its own notifications."""
    db, sim = shop.db, shop.sim
    register(sim, shop.url, ("stock.update",))
    with_inv = [p["id"] for p in sim.catalog()["products"] if p.get("inventories")]
    a, b = with_inv[0], with_inv[1]
    sell_burst(db, sim, [a, a], 2)
    st = sim.stats()
    assert set(st["by_path"]) == {"/productOnHands"}, st
    first = kv_local(st["last_query"]["/productOnHands"]["lastmodifiedfrom"])
    stock_matches(db, sim, [a])
    sell_burst(db, sim, [b, b], 4)
    st = sim.stats()
    assert set(st["by_path"]) == {"/productOnHands"}, st
    second = kv_local(st["last_query"]["/productOnHands"]["lastmodifiedfrom"])
    assert second - first >= timedelta(seconds=12), (first, second)
    stock_matches(db, sim, [b])

    # A redelivery naming a figure that is no longer true: read, not written as it says.
    inv = {p["id"]: p for p in sim.catalog()["products"]}[a]["inventories"][0]
    body = json.dumps({"Id": "redelivered-stock", "Attempt": 2, "Notifications": [{
        "Action": "stock.update.500712345", "Data": [{
            "ProductId": a, "BranchId": inv["branchId"], "OnHand": inv["onHand"] + 7,
            "Reserved": 0, "isActive": True}]}]})
    sim.reset_stats()
    db.sql("INSERT INTO public.kiotviet_webhook_events (integration_id, event_id, attempt, types,"
           " body) VALUES (%s, 'redelivered-stock', 2, 'stock.update', %s)", shop.integ, body)
    rows = wait_until(lambda: all_processed(db, 5), timeout=60, what="the redelivery applied")
    assert rows[4][3] == "applied", rows
    st = sim.stats()
    assert set(st["by_path"]) == {"/productOnHands"}, st
    stock_matches(db, sim, [a])


def test_notification_answered_then_daemon_killed_is_applied_on_restart(shop):
    db, sim = shop.db, shop.sim
    register(sim, shop.url, ("product.update",))
    pid = sim.catalog()["products"][1]["id"]
    # Hold the integration's row so the inbox run cannot claim it (the listener's insert only
    # needs a key-share lock of it): the notification is stored and answered, not applied.
    with psycopg.connect(db.dsn) as lock:
        lock.execute("SELECT 1 FROM public.third_party_integrations WHERE id = %s"
                     " FOR NO KEY UPDATE", (shop.integ,))
        sim.mutate(set={"id": pid, "fields": {"name": "stored, then killed"}})
        assert wait_until(lambda: delivered(sim), what="the answer") == 1
        assert [r[2] for r in events(db)] == [False]
        shop.d.kill()  # SIGKILL right after the answer
        lock.rollback()
    # (Its inbox run may have been waiting to claim the integration: that claim may still
    # commit, for a dead daemon, and hold the lease until it expires: lease_seconds 5 here.)
    assert product(db, pid)["name"] != "stored, then killed"
    shop.start()
    rows = wait_until(lambda: all_processed(db, 1), what="applied after the restart")
    assert rows[0][3] == "applied"
    assert product(db, pid)["name"] == "stored, then killed"


def test_webhooks_register_list_unregister_against_the_simulator(db, make_sim, workdir):
    sim = make_sim(products=5)
    integ = kvsd.setup_integration(db, sim)
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn)
    url = "https://shop.example/webhooks/kiotviet"
    # A hook of a handled type registered before (by hand, or an older registration) is
    # replaced; one of a type the daemon does not apply is left alone.
    for t in ("product.update", "order.update"):
        assert sim.api_call("POST", "/webhooks", {"Webhook": {"Type": t, "Url": "https://old/x",
                                                              "Secret": "old"}})[0] == 200
    res = kvsd.ctl("webhooks", "register", "kiotviet", "--url", url, "-c", cfg)
    assert res.rc == 0, res
    secret = db.value("SELECT webhook_secret FROM public.third_party_integrations WHERE id = %s",
                      integ)
    assert secret and len(secret) >= 32
    assert secret not in res.out + res.err  # never printed in full
    hooks = sim.webhooks()
    ours = sorted((h["type"], h["url"], h["secret"]) for h in hooks if h["url"] != "https://old/x")
    assert ours == sorted((t, url + "?noecho", secret) for t in TYPES)
    assert [h["type"] for h in hooks if h["url"] == "https://old/x"] == ["order.update"]
    assert res.out.count("registered ") == len(TYPES) and "deleted webhook" in res.out
    listed = kvsd.ctl("webhooks", "list", "kiotviet", "-c", cfg)
    assert listed.rc == 0 and listed.out.count(url + "?noecho") == len(TYPES), listed
    gone = kvsd.ctl("webhooks", "unregister", "kiotviet", "-c", cfg)
    assert gone.rc == 0, gone
    assert [h["type"] for h in sim.webhooks()] == ["order.update"]
    assert db.value("SELECT webhook_secret FROM public.third_party_integrations WHERE id = %s",
                    integ) is None
    assert kvsd.ctl("webhooks", "list", "nosuch", "-c", cfg).rc == 1
    assert kvsd.ctl("webhooks", "register", "kiotviet", "-c", cfg).rc == 64  # --url missing
