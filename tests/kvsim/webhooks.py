"""kvsim webhooks: KiotViet's webhook management API and the delivery of signed notifications.

Management (the real API, ../shared/kiotviet-api.md §7), per retailer:
  POST /webhooks {"Webhook": {"Type", "Url", "IsActive", "Description", "Secret"}} -> the hook
  GET /webhooks -> {"total", "pageSize", "data": [...]}; GET /webhooks/{id}; DELETE /webhooks/{id}

Delivery: every catalogue change (catalog.Catalog.listener) is rendered at once, as KiotViet
would, into the real envelope {"Id", "Attempt", "Notifications": [{"Action":
"<type>.<retailerId>", "Data": [...]}]} with PascalCase keys, a "__type" key and a lower-case
"isActive", and POSTed to every active hook of its type with X-Hub-Signature: sha1=<hex
HMAC-SHA256 of the body keyed with the Secret's UTF-8 bytes> (labelled sha1, as KiotViet does).
A non-2xx answer is retried with Attempt + 1 and the same Id; 400, 401, 403, 404 and 405 make
KiotViet stop delivering to that hook (IsActive false), as documented.

Options (POST /_sim/webhooks/config): delay_ms (before each delivery), duplicates (deliver every
notification twice, same Id), out_of_order (hold notifications back and deliver each batch of
`batch` newest first), retries (attempts after the first), retry_delay_ms, paused (queue only).
The delivery log (GET /_sim/webhooks/log) lists each notification: its Id, type, ids, the wall
time of the change (`changed_at`, for freshness figures) and every attempt's status.
"""

import copy
import hashlib
import hmac
import json
import re
import threading
import time
import urllib.error
import urllib.request
import uuid

TYPES = ("product.update", "product.delete", "stock.update", "category.update",
         "category.delete", "customer.update", "order.update", "invoice.update",
         "pricebook.update", "pricebook.delete", "branch.update", "branch.delete")
TYPE_HINT = {
    "product.update": "KiotViet.OmniChannelCore.Api.Shared.Model.WebhookProductUpdateRes, "
                      "KiotViet.OmniChannelCore.Api.Shared",
    "stock.update": "KiotViet.OmniChannelCore.Api.Shared.Model.WebhookProductStockRes, "
                    "KiotViet.OmniChannelCore.Api.Shared",
    "category.update": "KiotViet.OmniChannelCore.Api.Shared.Model.WebhookCategoryUpdateRes, "
                       "KiotViet.OmniChannelCore.Api.Shared",
}
STOP_STATUSES = (400, 401, 403, 404, 405)
DEFAULTS = {"delay_ms": 0, "duplicates": False, "out_of_order": False, "batch": 2,
            "retries": 3, "retry_delay_ms": 200, "paused": False}
WORKERS = 4  # deliveries in parallel, as a sender that does not wait for each answer


def pascal(obj):
    """camelCase keys to PascalCase, recursively; isActive stays lower-case (as captured)."""
    if isinstance(obj, dict):
        return {(k if k == "isActive" else k[:1].upper() + k[1:]): pascal(v)
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [pascal(v) for v in obj]
    return obj


def with_type(rec, kind):
    out = {"__type": TYPE_HINT[kind]}
    out.update(rec)
    return out


def sign(body, secret):
    return "sha1=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def render(cat, kind, ident):
    """The Data list of a notification, from the catalogue as it is now (lock held)."""
    if kind == "product.update":
        d = cat.product_obj(ident, inventory=True, serials=False)
        d["images"] = [{"image": u} for u in d.get("images", [])]
        return [with_type(pascal(d), kind)]
    if kind == "stock.update":
        p = cat.products[ident]
        rows = []
        for inv in cat.inventories.get(ident, []):
            r = {"productId": ident, "productCode": p["code"], "productName": p["name"]}
            r.update(inv)
            rows.append(with_type(pascal(r), kind))
        return rows
    if kind == "category.update":
        c = cat.categories[ident]
        d = {"id": ident, "name": c["categoryName"], "isDeleted": False,
             "retailerId": cat.retailer_id, "rank": c.get("rank", 0),
             "hasChild": c.get("hasChild", False), "createdDate": c.get("createdDate")}
        if "parentId" in c:
            d["parentId"] = c["parentId"]
        if c.get("modifiedDate"):
            d["modifiedDate"] = c["modifiedDate"]
        return [with_type(pascal(d), kind)]
    return [ident]  # *.delete: a bare id list, as KiotViet's own plugin reads it


class Hooks:
    """Registered webhooks of every retailer, and the delivery queue (one worker thread)."""

    def __init__(self):
        self.lock = threading.Condition()
        self.hooks = {}      # id -> dict (retailer key, type, url, isActive, description, secret)
        self.next_id = 91000001
        self.config = dict(DEFAULTS)
        self.queue = []      # pending deliveries: dict(due, hook id, body obj, entry)
        self.held = []       # out_of_order: notifications waiting for their batch
        self.log = []        # one entry per notification
        self.workers = []
        self.stop = threading.Event()

    # ---- management API ------------------------------------------------------------------

    def view(self, h):
        return {"id": h["id"], "type": h["type"], "url": h["url"], "isActive": h["isActive"],
                "retailerId": h["retailerId"], "description": h["description"],
                "modifiedDate": h["modifiedDate"]}

    def register(self, ret, body):
        w = (body or {}).get("Webhook") or (body or {}).get("webhook")
        if not isinstance(w, dict):
            return 400, {"responseStatus": {"errorCode": "ArgumentException",
                                            "message": "Webhook is required"}}
        lw = {k.lower(): v for k, v in w.items()}
        typ, url = lw.get("type"), lw.get("url")
        if typ not in TYPES or not isinstance(url, str) or not re.match(r"https?://", url):
            return 400, {"responseStatus": {"errorCode": "ArgumentException",
                                            "message": "Type or Url is invalid"}}
        with self.lock:
            hid = self.next_id
            self.next_id += 1
            self.hooks[hid] = {"id": hid, "retailer": ret.name.lower(), "type": typ, "url": url,
                               "isActive": bool(lw.get("isactive", True)),
                               "description": lw.get("description") or "",
                               "secret": lw.get("secret") or "",
                               "retailerId": ret.retailer_id,
                               "modifiedDate": time.strftime("%Y-%m-%dT%H:%M:%S.0000000")}
            return 200, self.view(self.hooks[hid])

    def list(self, ret):
        with self.lock:
            data = [self.view(h) for h in self.hooks.values() if h["retailer"] == ret.name.lower()]
        return 200, {"total": len(data), "pageSize": len(data), "data": data}

    def get(self, ret, hid):
        with self.lock:
            h = self.hooks.get(hid)
            if h is None or h["retailer"] != ret.name.lower():
                return 404, {"responseStatus": {"errorCode": "NotFound",
                                                "message": "Webhook %d not found" % hid}}
            return 200, self.view(h)

    def delete(self, ret, hid):
        with self.lock:
            h = self.hooks.get(hid)
            if h is None or h["retailer"] != ret.name.lower():
                return 404, {"responseStatus": {"errorCode": "NotFound",
                                                "message": "Webhook %d not found" % hid}}
            del self.hooks[hid]
        return 200, {"message": "Hủy đăng ký webhook thành công"}

    def secrets(self, ret):
        """The control API's view, secrets included (tests compare them with the database)."""
        with self.lock:
            return [dict(self.view(h), secret=h["secret"]) for h in self.hooks.values()
                    if h["retailer"] == ret.name.lower()]

    def set_config(self, req):
        with self.lock:
            for k, v in (req or {}).items():
                if k not in DEFAULTS:
                    raise ValueError("unknown webhook option %r" % k)
                if type(v) is not type(DEFAULTS[k]) and not (
                        isinstance(DEFAULTS[k], int) and isinstance(v, float)):
                    raise ValueError("webhook option %s: expected %s" % (k,
                                     type(DEFAULTS[k]).__name__))
                self.config[k] = v
            if not self.config["out_of_order"] and self.held:
                self._release_held()
            self.lock.notify_all()
            return dict(self.config)

    # ---- delivery ------------------------------------------------------------------------

    def on_change(self, ret, kind, ident):
        """Catalogue listener (called with the catalogue's lock held): render now, send later."""
        with self.lock:
            targets = [h["id"] for h in self.hooks.values()
                       if h["retailer"] == ret.name.lower() and h["type"] == kind
                       and h["isActive"]]
        if not targets:
            return
        data = render(ret.catalog, kind, ident)
        entry = {"id": str(uuid.uuid4()), "type": kind, "ids": [ident],
                 "changed_at": time.time(), "attempts": []}
        env = {"Id": entry["id"], "Attempt": 1,
               "Notifications": [{"Action": "%s.%d" % (kind, ret.retailer_id), "Data": data}]}
        with self.lock:
            self.log.append(entry)
            for hid in targets:
                item = {"hook": hid, "env": env, "entry": entry, "due": 0.0}
                if self.config["out_of_order"]:
                    self.held.append(item)
                    if len(self.held) >= self.config["batch"]:
                        self._release_held()
                else:
                    self._enqueue(item)
            self._ensure_worker()
            self.lock.notify_all()

    def _release_held(self):
        for item in reversed(self.held):  # newest first
            self._enqueue(item)
        self.held = []

    def _enqueue(self, item):
        item["due"] = time.monotonic() + self.config["delay_ms"] / 1000.0
        self.queue.append(item)
        if self.config["duplicates"]:
            self.queue.append(dict(item))

    def _ensure_worker(self):
        while len(self.workers) < WORKERS:
            t = threading.Thread(target=self._run, args=(len(self.workers),), daemon=True)
            self.workers.append(t)
            t.start()

    def flush(self):
        """Delivers notifications held back for out-of-order delivery."""
        with self.lock:
            self._release_held()
            self.lock.notify_all()

    def _run(self, index):
        while not self.stop.is_set():
            with self.lock:
                now = time.monotonic()
                ready = [i for i in self.queue if i["due"] <= now]
                # out_of_order promises an order of arrival: one worker delivers then
                idle = index > 0 and self.config["out_of_order"]
                if self.config["paused"] or not ready or idle:
                    wait = 0.5
                    if self.queue and not self.config["paused"]:
                        wait = max(0.001, min(i["due"] for i in self.queue) - now)
                    self.lock.wait(wait)
                    continue
                item = ready[0]
                self.queue.remove(item)
                h = self.hooks.get(item["hook"])
                if h is None or not h["isActive"]:
                    continue
                url, secret = h["url"], h["secret"]
            self._deliver(item, url, secret)

    def _deliver(self, item, url, secret):
        body = json.dumps(item["env"], ensure_ascii=False, separators=(",", ":")).encode()
        req = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json; charset=utf-8",
            "X-Hub-Signature": sign(body, secret), "User-Agent": "kvsim-webhooks"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                status = r.status
        except urllib.error.HTTPError as e:
            status = e.code
        except (OSError, ValueError):
            status = 0  # refused, reset, timed out: retried like a 5xx
        with self.lock:
            item["entry"]["attempts"].append({"attempt": item["env"]["Attempt"],
                                              "status": status, "at": time.time()})
            if 200 <= status < 300:
                return
            h = self.hooks.get(item["hook"])
            if status in STOP_STATUSES and h is not None:
                h["isActive"] = False  # KiotViet stops sending to such an endpoint
                return
            if item["env"]["Attempt"] <= self.config["retries"]:
                env = copy.deepcopy(item["env"])
                env["Attempt"] += 1
                self.queue.append({"hook": item["hook"], "env": env, "entry": item["entry"],
                                   "due": time.monotonic() + self.config["retry_delay_ms"] / 1000.0})
                self.lock.notify_all()

    def log_view(self):
        with self.lock:
            return {"pending": len(self.queue) + len(self.held),
                    "notifications": copy.deepcopy(self.log)}

    def reset(self):
        with self.lock:
            self.hooks.clear()
            self.queue = []
            self.held = []
            self.log = []
            self.config = dict(DEFAULTS)
