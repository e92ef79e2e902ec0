#!/usr/bin/python3
"""KiotViet Public API simulator for integration tests, `make demo` and `make bench`.

Serves POST /connect/token, GET /categories[/{id}], GET /products[/{id}|/code/{code}],
GET /productOnHands for one or more retailers, plus a JSON control API under /_sim/ (faults, mutations, stats, config).
Behaviour follows /work/shared/kiotviet-api.md; see README.md next to this file.
Python stdlib only. Prints one JSON line {"port","url","ca"} on stdout when ready.
"""

import argparse
import collections
import email.utils
import http
import json
import math
import os
import secrets
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import catalog as catmod  # noqa: E402  (sibling module, script-relative import)
import depth  # noqa: E402  (branches, serial sales, price books: issue 16)
import webhooks  # noqa: E402

REMOVED_KEYS = ("removedIds", "removeIds", "removedId", "removeId")
FAULT_KINDS = ("status", "reset", "stall", "delay", "malformed", "truncate", "bad_record",
               "token_expired", "drift", "duplicate", "total_change", "no_data")
# Kinds acted on before authentication and routing; the rest change the rendered answer.
PRE_KINDS = ("status", "reset", "delay", "token_expired", "drift")
BASE_RETAILER_ID = 500712345
PAGE_CACHE_BYTES = 96 * 1024 * 1024


def _json(obj):
    return catmod.dumps(obj)


def _err(code, msg):
    return {"responseStatus": {"errorCode": code, "message": msg, "errors": []}}


class ApiError(Exception):
    def __init__(self, status, code, msg, headers=None):
        super().__init__(msg)
        self.status = status
        self.body = _json(_err(code, msg))
        self.headers = headers or {}


def _new_stats():
    return {"requests": 0, "token_requests": 0, "gets": 0, "by_path": {}, "status": {},
            "status_429": 0, "cpu_seconds": 0.0, "bytes_sent": 0, "last_query": {}}


class Retailer:
    def __init__(self, name, index, seed, products, prewarm, serial_share=0.1):
        self.name = name
        self.serial_share = serial_share
        self.index = index
        self.seed = seed
        self.products = products
        self.prewarm = prewarm
        self.retailer_id = BASE_RETAILER_ID + index
        self.default_credentials()
        self.budget_lock = threading.Lock()
        self.window = collections.deque()
        self.stats = _new_stats()
        self.hook_sink = None  # webhooks.Hooks.on_change, set by State
        self.regenerate()

    def default_credentials(self):
        self.client_id = "cid-%s" % self.name
        self.client_secret = "secret-%s-0123456789abcdef" % self.name

    def regenerate(self):
        old_stop = getattr(self, "prewarm_stop", None)
        if old_stop is not None:
            old_stop.set()  # the old catalogue's background rendering is moot
        self.catalog = catmod.Catalog(seed=self.seed, products=self.products,
                                      retailer=self.name, retailer_id=self.retailer_id,
                                      index=self.index, serial_share=self.serial_share)
        self.catalog.listener = lambda kind, ident: (
            self.hook_sink and self.hook_sink(self, kind, ident))
        self.prewarm_stop = threading.Event()
        if self.prewarm == "sync":
            self.catalog.prewarm()
        elif self.prewarm == "background":
            # Rendering JSON is the costly part of a cold page; do it while the client is
            # still starting up rather than on its first full sync.
            threading.Thread(target=self.catalog.prewarm, args=(self.prewarm_stop,),
                             daemon=True).start()
        self.page_cache = collections.OrderedDict()
        self.page_cache_bytes = 0
        self.page_cache_version = self.catalog.version


class State:
    """Everything the handlers share. Lock order: catalog.lock, then self.lock."""

    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.stop = threading.Event()
        names = args.retailer or ["demoshop"]
        self.retailers = collections.OrderedDict()
        for i, n in enumerate(names):
            if n.lower() in self.retailers:
                sys.exit("kvsim: duplicate retailer %r" % n)
            self.retailers[n.lower()] = Retailer(n, i, args.seed + i, args.products,
                                                 args.prewarm, args.serial_share)
        self.hooks = webhooks.Hooks()
        for r in self.retailers.values():
            r.hook_sink = self.hooks.on_change
        self.tokens = {}  # token -> (retailer key, expiry in monotonic seconds)
        self.faults = []
        self.reset_config()
        self.reset_stats()

    def reset_config(self):
        a = self.args
        self.config = {"latency_ms": a.latency_ms, "token_ttl": a.token_ttl,
                       "budget": a.budget, "retry_after": True, "zero_date_bug": False,
                       "removed_key": "removedIds", "removed_every_page": False,
                       "page_cap": a.page_cap, "onhand_key": "onHand"}

    def reset_stats(self):
        with self.lock:
            self.totals = _new_stats()
            self.cpu_base = time.process_time()
            for r in self.retailers.values():
                r.stats = _new_stats()
                with r.budget_lock:
                    r.window.clear()

    def retailer(self, name):
        if name is None:
            return next(iter(self.retailers.values()))
        r = self.retailers.get(str(name).lower())
        if r is None:
            raise ApiError(404, "NotFound", "unknown retailer %r" % name)
        return r

    def by_client(self, client_id):
        for r in self.retailers.values():
            if r.client_id == client_id:
                return r
        return None

    # ---- faults -------------------------------------------------------------------------

    def add_faults(self, rules):
        if isinstance(rules, dict):
            rules = [rules]
        if not isinstance(rules, list):
            raise ApiError(400, "BadRequest", "faults: expected a JSON list of rules")
        clean = []
        for r in rules:
            if not isinstance(r, dict) or r.get("kind") not in FAULT_KINDS:
                raise ApiError(400, "BadRequest", "bad fault rule %r" % (r,))
            if r["kind"] == "status" and not isinstance(r.get("status"), int):
                raise ApiError(400, "BadRequest", "status rule needs an integer 'status'")
            rule = dict(r)
            rule["match"] = str(r.get("match", "")).lower()
            rule["_skipped"] = 0
            rule["_remaining"] = int(r.get("times", 1))
            rule["_applied"] = 0
            clean.append(rule)
        with self.lock:
            self.faults.extend(clean)
        return len(clean)

    def pick_fault(self, lpath, retailer_key):
        """First active rule for this request. Every matching rule counts the request towards
        its own `after`, so `after` means "skip the first M requests to this path"."""
        chosen = None
        with self.lock:
            for rule in self.faults:
                if not lpath.startswith(rule["match"]):
                    continue
                rr = rule.get("retailer")
                if rr is not None and (retailer_key is None or str(rr).lower() != retailer_key):
                    continue
                if rule["_skipped"] < int(rule.get("after", 0)):
                    rule["_skipped"] += 1
                    continue
                if chosen is None and rule["_remaining"] != 0:
                    if rule["_remaining"] > 0:
                        rule["_remaining"] -= 1
                    rule["_applied"] += 1
                    chosen = rule
        return chosen

    # ---- stats ----------------------------------------------------------------------------

    def count(self, ret, field, path_key=None, query=None):
        with self.lock:
            for s in (self.totals, ret.stats if ret else None):
                if s is None:
                    continue
                s[field] += 1
                if path_key:
                    s["by_path"][path_key] = s["by_path"].get(path_key, 0) + 1
                    if query is not None:  # the last request's query names (lower case)
                        s["last_query"][path_key] = dict(query)

    def account(self, ret, status, nbytes, cpu):
        with self.lock:
            for s in (self.totals, ret.stats if ret else None):
                if s is None:
                    continue
                s["requests"] += 1
                k = str(status)
                s["status"][k] = s["status"].get(k, 0) + 1
                if status == 429:
                    s["status_429"] += 1
                s["bytes_sent"] += nbytes
                if s is not self.totals:
                    s["cpu_seconds"] += cpu

    def stats_view(self, name):
        with self.lock:
            if name is not None:
                st = dict(self.retailer(name).stats)
                st["by_path"] = dict(st["by_path"])
                st["status"] = dict(st["status"])
                st["last_query"] = dict(st["last_query"])
                return st
            out = json.loads(json.dumps(self.totals))
            out["cpu_seconds"] = time.process_time() - self.cpu_base
            out["retailers"] = {r.name: json.loads(json.dumps(r.stats))
                                for r in self.retailers.values()}
            return out


# ---------------------------------------------------------------------------------------------
# Query parameter helpers (names are case-insensitive; unknown names are ignored)
# ---------------------------------------------------------------------------------------------

def _q_int(q, name, default):
    v = q.get(name)
    if v is None or v.strip() == "":
        return default
    try:
        return int(v.strip())
    except ValueError:
        raise ApiError(400, "RequestBindingException",
                       "Unable to bind request: '%s' is not an integer" % name) from None


def _q_bool(q, name, default=False):
    v = q.get(name)
    if v is None or v.strip() == "":
        return default
    return v.strip().lower() in ("true", "1", "yes", "on")


def _q_since(q):
    v = q.get("lastmodifiedfrom")
    if v is None or v.strip() == "":
        return None
    try:
        return catmod.parse_datetime(v)
    except ValueError:
        raise ApiError(400, "RequestBindingException",
                       "Unable to bind request: 'lastModifiedFrom' is not a valid date") from None


def _with_timestamp(page):
    """A products page with the response "timestamp" of now (+07:00, as on real answers);
    added after the page cache, which must not freeze it."""
    return b"".join((page[:-1], b',"timestamp":"', catmod.fmt_ts(catmod.now_ticks()).encode(),
                     b'"}'))


def _q_page(q, cap=100):
    """(pageSize, currentItem): the size asked for, capped at `cap` (the answer echoes it)."""
    size = _q_int(q, "pagesize", 20)
    if size <= 0:
        size = 20
    size = min(size, cap)
    cur = max(0, _q_int(q, "currentitem", 0))
    return size, cur


def _q_order(q, table, default):
    v = q.get("orderby")
    if v is None or v.strip() == "":
        order = default
    else:
        order = table.get(v.strip().lower())
        if order is None:
            raise ApiError(400, "ArgumentException", "orderBy: unknown field '%s'" % v.strip())
    desc = (q.get("orderdirection") or "").strip().lower() == "desc"
    return order, desc


# ---------------------------------------------------------------------------------------------
# Broken records for the bad_record fault
# ---------------------------------------------------------------------------------------------

def _bad_record(cat, pid, variant):
    d = cat.product_obj(pid, inventory=False, serials=False) if pid is not None else {
        "id": 1, "code": "X", "name": "X"}
    if variant == "missing_id":
        d.pop("id", None)
        return _json(d)
    if variant == "extreme":
        d["name"] = "Nhẫn 💍\u0000 𠜎 cực dài"
        d["fullName"] = d["name"]
        d["description"] = ("Mô tả rất dài 💎 " * 700)[:10000]
        d["attributes"] = [{"productId": d.get("id"), "attributeName": "THUỘC TÍNH %d" % i,
                            "attributeValue": "giá trị %d 🌸" % i} for i in range(1000)]
        d["basePrice"] = "__KVSIM_BP__"
        d["weight"] = "__KVSIM_W__"
        return _json(d).replace(b'"__KVSIM_BP__"', b"1e308").replace(b'"__KVSIM_W__"', b"-0")
    # wrong_types (default)
    d["id"] = {"value": d.get("id")}
    d["basePrice"] = "abc"
    return _json(d)


# ---------------------------------------------------------------------------------------------
# HTTP handler
# ---------------------------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kvsim"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 300  # idle keep-alive connections are dropped after this

    # quiet: the test output should not drown in access logs
    def log_message(self, fmt, *args):
        if self.server.state.args.verbose:
            sys.stderr.write("kvsim: %s %s\n" % (self.address_string(), fmt % args))

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_PUT(self):
        self._dispatch("PUT")

    # ---- low-level output ---------------------------------------------------------------

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = bytearray()
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline(65537)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _head_bytes(self, status, length, headers, ctype):
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Status"
        lines = ["HTTP/1.1 %d %s" % (status, phrase),
                 "Date: " + email.utils.formatdate(usegmt=True),
                 "Server: kvsim",
                 "Content-Type: " + ctype,
                 "Content-Length: %d" % length]
        for k, v in (headers or {}).items():
            lines.append("%s: %s" % (k, v))
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send(self, status, body, headers=None, ctype="application/json; charset=utf-8"):
        data = self._head_bytes(status, len(body), headers, ctype) + body
        self._status = status
        self._nbytes += len(data)
        self._account()  # before the write, so stats never lag behind what clients saw
        self.wfile.write(data)

    def _account(self):
        if self._accounted or self._control_call:
            return
        self._accounted = True
        self.server.state.account(self._ret, self._status, self._nbytes,
                                  time.thread_time() - self._cpu0)

    def _send_obj(self, status, obj, headers=None):
        self._send(status, _json(obj), headers)

    def _reset_connection(self):
        """Abort with a TCP RST: no answer at all."""
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True
        self._status = 0
        self._account()
        self.server.abort_socket(self.connection)

    # ---- dispatch ----------------------------------------------------------------------

    def _dispatch(self, method):
        self._cpu0 = time.thread_time()
        self._accounted = False
        self._control_call = False
        self._status = 0
        self._nbytes = 0
        self._drift = None  # the handler object lives as long as the keep-alive connection
        self._ret = None    # the retailer this request is attributed to, once known
        try:
            body = self._read_body()
            split = urlsplit(self.path)
            path = unquote(split.path)
            lpath = path.lower().rstrip("/") or "/"
            q = {}
            for k, v in parse_qsl(split.query, keep_blank_values=True):
                q[k.lower()] = v
            if lpath.startswith("/_sim/") or lpath == "/_sim":
                self._control_call = True
                self._control(method, lpath, q, body)
                return
            self._api(method, path, lpath, q, body)
        except ApiError as e:
            self._send(e.status, e.body, e.headers)
        except (ConnectionError, ssl.SSLError, TimeoutError):
            self.close_connection = True
        except Exception as e:  # a simulator bug: say so loudly, answer 500
            import traceback
            traceback.print_exc()
            try:
                self._send(500, _json(_err("InternalError", "kvsim: %s" % e)))
            except OSError:
                self.close_connection = True
        finally:
            self._account()  # requests that were reset or stalled

    # ---- the KiotViet API --------------------------------------------------------------

    def _api(self, method, path, lpath, q, body):
        """Returns the Retailer the request was attributed to (for stats)."""
        state = self.server.state
        cfg = state.config
        if lpath == "/connect/token":
            return self._token(method, body)

        rname = (self.headers.get("Retailer") or "").strip()
        ret = state.retailers.get(rname.lower()) if rname else None
        self._ret = ret
        route, arg = self._route(path, lpath)
        if method == "GET":
            state.count(ret, "gets", route, q)
        fault = state.pick_fault(lpath, ret.name.lower() if ret else None)
        if fault is not None and fault["kind"] in PRE_KINDS:
            if self._pre_fault(fault, ret):
                return ret
        if cfg["latency_ms"]:
            time.sleep(cfg["latency_ms"] / 1000.0)

        if route is None:
            raise ApiError(404, "NotFound", "Handler for Request not found: %s %s"
                           % (method, path))
        if route.startswith("/webhooks"):
            return self._webhooks(method, route, arg, ret, rname, body)
        if method != "GET":
            raise ApiError(405, "NotSupported", "Method %s not allowed on %s" % (method, path))
        if not rname:
            raise ApiError(400, "RetailerException", "Missing 'Retailer' header")
        if ret is None:
            raise ApiError(400, "RetailerException",
                           "Retailer '%s' does not exist or is not active" % rname)
        self._check_token(ret)
        self._check_budget(ret)

        content_fault = fault if fault is not None and fault["kind"] not in PRE_KINDS else None
        if route == "/products":
            out = self._products(ret, q, content_fault)
        elif route == "/categories":
            out = self._categories(ret, q, content_fault)
        elif route == "/productOnHands":
            out = self._onhands(ret, q, content_fault)
        elif route == "/branches":
            out = self._branches(ret, q)
        elif route == "/pricebooks":
            out = self._pricebooks(ret, q)
        else:
            out = self._detail(ret, route, arg, q)
        self._answer(200, out, content_fault)
        return ret

    def _webhooks(self, method, route, arg, ret, rname, body):
        """The webhook management API (webhooks.Hooks), authenticated like the rest."""
        if not rname or ret is None:
            raise ApiError(400, "RetailerException", "Missing or unknown 'Retailer' header")
        self._check_token(ret)
        hooks = self.server.state.hooks
        if route == "/webhooks" and method == "POST":
            try:
                req = json.loads(body.decode() or "null")
            except ValueError:
                raise ApiError(400, "SerializationException", "body is not JSON") from None
            status, out = hooks.register(ret, req)
        elif route == "/webhooks" and method == "GET":
            status, out = hooks.list(ret)
        elif route == "/webhooks/{id}" and method in ("GET", "DELETE"):
            try:
                hid = int(arg)
            except ValueError:
                raise ApiError(400, "RequestBindingException", "id is not a number") from None
            status, out = (hooks.get if method == "GET" else hooks.delete)(ret, hid)
        else:
            raise ApiError(405, "NotSupported", "Method %s not allowed" % method)
        self._send_obj(status, out)
        return ret

    @staticmethod
    def _route(path, lpath):
        parts = [p for p in path.split("/") if p]
        lparts = [p for p in lpath.split("/") if p]
        if lparts == ["webhooks"]:
            return "/webhooks", None
        if len(lparts) == 2 and lparts[0] == "webhooks":
            return "/webhooks/{id}", parts[1]
        if lparts == ["products"]:
            return "/products", None
        if lparts == ["categories"]:
            return "/categories", None
        if lparts == ["productonhands"]:
            return "/productOnHands", None
        if lparts in (["branches"], ["pricebooks"]):
            return "/" + lparts[0], None
        if len(lparts) == 3 and lparts[:2] == ["products", "code"]:
            return "/products/code/{code}", parts[2]
        if len(lparts) == 2 and lparts[0] in ("products", "categories"):
            return "/%s/{id}" % lparts[0], parts[1]
        return None, None

    def _pre_fault(self, fault, ret):
        """Acts on a pre-routing fault. True when the request has been fully answered."""
        kind = fault["kind"]
        state = self.server.state
        if kind == "delay":
            state.stop.wait(float(fault.get("ms", 1000)) / 1000.0)
            return False
        if kind == "drift":
            self._drift = fault
            return False
        if kind == "reset":
            self._reset_connection()
            return True
        if kind == "token_expired":
            self._send(401, _json(_err("TokenException", "Token is expired or invalid")))
            return True
        # status
        status = int(fault["status"])
        b = fault.get("body")
        if b is None:
            b = _json(_err("SimulatedError", "simulated HTTP %d" % status))
        elif not isinstance(b, (bytes, str)):
            b = _json(b)
        if isinstance(b, str):
            b = b.encode()
        hdrs = {str(k): str(v) for k, v in (fault.get("headers") or {}).items()}
        ctype = hdrs.pop("Content-Type", None) or hdrs.pop("content-type", None) or \
            "application/json; charset=utf-8"
        self._send(status, b, hdrs, ctype)
        return True

    def _check_token(self, ret):
        state = self.server.state
        auth = (self.headers.get("Authorization") or "").strip()
        if not auth:
            raise ApiError(401, "TokenException", "Authorization header is required")
        scheme, _, tok = auth.partition(" ")
        if scheme.lower() != "bearer" or not tok.strip():
            raise ApiError(401, "TokenException", "Authorization must be a Bearer token")
        with state.lock:
            entry = state.tokens.get(tok.strip())
        if entry is None:
            raise ApiError(401, "TokenException", "Token is invalid")
        rkey, expiry = entry
        if time.monotonic() >= expiry:
            raise ApiError(401, "TokenException", "Token is expired")
        if rkey != ret.name.lower():
            raise ApiError(401, "TokenException", "Token is not valid for this retailer")

    def _check_budget(self, ret):
        state = self.server.state
        budget = int(state.config["budget"])
        now = time.monotonic()
        with ret.budget_lock:
            w = ret.window
            while w and w[0] <= now - 3600:
                w.popleft()
            if len(w) >= budget:
                retry = max(1, int(math.ceil(w[0] + 3600 - now))) if w else 3600
                hdrs = {"Retry-After": str(retry)} if state.config["retry_after"] else {}
                raise ApiError(429, "RateLimitExceeded",
                               "Vượt quá giới hạn %d request GET/giờ, thử lại sau %d giây"
                               % (budget, retry), hdrs)
            w.append(now)

    def _token(self, method, body):
        state = self.server.state
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        cid = form.get("client_id")
        sec = form.get("client_secret")
        auth = self.headers.get("Authorization") or ""
        if auth.lower().startswith("basic ") and cid is None:
            import base64
            try:
                cid, _, sec = base64.b64decode(auth[6:].strip()).decode().partition(":")
            except ValueError:
                pass
        ret = state.by_client(cid) if cid else None
        self._ret = ret
        state.count(ret, "token_requests", "/connect/token")
        fault = state.pick_fault("/connect/token", ret.name.lower() if ret else None)
        if fault is not None and fault["kind"] in PRE_KINDS and fault["kind"] != "drift":
            if self._pre_fault(fault, ret):
                return ret
        if state.config["latency_ms"]:
            time.sleep(state.config["latency_ms"] / 1000.0)
        if method != "POST":
            self._send_obj(405, {"error": "invalid_request"})
            return ret
        if ret is None or not secrets.compare_digest(str(sec or ""), ret.client_secret):
            self._send_obj(400, {"error": "invalid_client"})
            return ret
        if form.get("grant_type") != "client_credentials":
            self._send_obj(400, {"error": "unsupported_grant_type"})
            return ret
        ttl = float(state.config["token_ttl"])
        tok = secrets.token_urlsafe(72)  # 96 chars
        with state.lock:
            now = time.monotonic()
            if len(state.tokens) > 10000:  # forget long-expired tokens
                state.tokens = {t: e for t, e in state.tokens.items() if e[1] > now}
            state.tokens[tok] = (ret.name.lower(), now + ttl)
        out = {"access_token": tok, "expires_in": int(ttl), "token_type": "Bearer"}
        if fault is not None and fault["kind"] not in PRE_KINDS:
            self._answer(200, (_json(out), None), fault)
        else:
            self._send_obj(200, out)
        return ret

    # ---- rendering ---------------------------------------------------------------------

    def _apply_drift(self, ret, order=None, desc=False, since=None, active=None, category=None,
                     categories=False):
        fault = getattr(self, "_drift", None)
        if fault is None:
            return
        self._drift = None
        cat = ret.catalog
        m = fault.get("mutation") or {"delete": 1}
        for op, k in m.items():
            k = int(k)
            if categories:
                fn = {"delete": cat.delete_categories, "add": cat.add_categories,
                      "edit": cat.edit_categories}.get(op)
                if fn:
                    fn(k)
                continue
            if op == "delete":
                cfg = self.server.state.config
                ids = cat.query_products(order, desc, since, active, category,
                                         cfg["zero_date_bug"])[:k]
                cat.delete_products(0, ids=list(ids))
            elif op == "add":
                cat.add_products(k)
            elif op == "edit":
                cat.edit_products(k)

    def _removed_part(self, ret, q, since, cur, categories):
        cfg = self.server.state.config
        if not _q_bool(q, "includeremoveids"):
            return b""
        if cur != 0 and not cfg["removed_every_page"]:
            return b""
        ids = ret.catalog.removed_since(since, categories=categories)
        return b',"' + cfg["removed_key"].encode() + b'":' + _json(ids)

    def _products(self, ret, q, fault):
        cfg = self.server.state.config
        size, cur = _q_page(q, cfg["page_cap"])
        order, desc = _q_order(q, catmod.Catalog.PRODUCT_ORDER, "name")
        since = _q_since(q)
        inv = _q_bool(q, "includeinventory")
        ser = _q_bool(q, "includeserials")
        pb = _q_bool(q, "includepricebook")
        active = None
        if (q.get("isactive") or "").strip():
            active = _q_bool(q, "isactive")
        category = _q_int(q, "categoryid", None)
        key = ("p", size, cur, order, desc, since, inv, ser, pb, active, category,
               _q_bool(q, "includeremoveids"), cfg["removed_key"], cfg["removed_every_page"],
               cfg["zero_date_bug"], cfg["page_cap"])
        cat = ret.catalog
        with cat.lock:
            self._apply_drift(ret, order, desc, since, active, category)
            if ret.page_cache_version != cat.version:
                ret.page_cache.clear()
                ret.page_cache_bytes = 0
                ret.page_cache_version = cat.version
            if fault is None:
                hit = ret.page_cache.get(key)
                if hit is not None:
                    ret.page_cache.move_to_end(key)
                    return _with_timestamp(hit)
            ids = cat.query_products(order, desc, since, active, category, cfg["zero_date_bug"])
            total = len(ids)
            page = ids[cur:cur + size]
            rows = [cat.product_json(i, inv, ser) for i in page]
            if pb:
                depth.state(cat)
                rows = [r[:-1] + depth.pricebooks_json(cat, i) + b"}" for r, i in zip(rows, page)]
            kind = fault["kind"] if fault else None
            if kind == "duplicate" and 0 < cur <= len(ids):
                rows.insert(0, cat.product_json(ids[cur - 1], inv, ser))
            elif kind == "bad_record" and rows:
                idx = min(int(fault.get("index", 1)), len(rows) - 1)
                pid = page[idx] if idx < len(page) else None
                rows[idx] = _bad_record(cat, pid, fault.get("variant", "wrong_types"))
            elif kind == "total_change":
                total += int(fault.get("delta", 1))
            removed = self._removed_part(ret, q, since, cur, False)
        out = b"".join((b'{"total":', str(total).encode(), b',"pageSize":', str(size).encode(),
                        b',"data":[', b",".join(rows), b"]", removed, b"}"))
        if fault is None:
            with cat.lock:
                if ret.page_cache_version == cat.version and len(out) < PAGE_CACHE_BYTES // 8:
                    ret.page_cache[key] = out
                    ret.page_cache_bytes += len(out)
                    while ret.page_cache_bytes > PAGE_CACHE_BYTES and ret.page_cache:
                        _, old = ret.page_cache.popitem(last=False)
                        ret.page_cache_bytes -= len(old)
        return _with_timestamp(out)

    def _onhands(self, ret, q, fault):
        """GET /productOnHands: stock only, filtered on the stock's modification time (a sale
        moves it, not the product's modifiedDate); ordered by id; `onhand_key` picks the doc's
        lower-case `onhand` spelling. Faults: total_change, no_data (in _answer)."""
        cfg = self.server.state.config
        size, cur = _q_page(q, cfg["page_cap"])
        _q_order(q, {"id": "id"}, "id")
        since = _q_since(q)
        cat = ret.catalog
        with cat.lock:
            ids = cat.query_onhands(since)
            total = len(ids)
            rows = [cat.onhand_json(i, cfg["onhand_key"]) for i in ids[cur:cur + size]]
        if fault is not None and fault["kind"] == "total_change":
            total += int(fault.get("delta", 1))
        return _with_timestamp(b"".join((b'{"total":', str(total).encode(), b',"pageSize":',
                                         str(size).encode(), b',"data":[', b",".join(rows),
                                         b"]}")))

    def _categories(self, ret, q, fault):
        size, cur = _q_page(q, self.server.state.config["page_cap"])
        order, desc = _q_order(q, catmod.Catalog.CATEGORY_ORDER, "name")
        hier = _q_bool(q, "hierachicaldata")  # sic: the documented spelling
        since = None if hier else _q_since(q)
        cat = ret.catalog
        with cat.lock:
            self._apply_drift(ret, categories=True)
            if hier:
                rows = cat.category_tree(order, desc)
            else:
                # A flat list has no hasChild (real captures); the tree keeps it.
                rows = [{k: v for k, v in cat.categories[c].items() if k != "hasChild"}
                        for c in cat.query_categories(order, desc, since)]
            total = len(rows)
            page = rows[cur:cur + size]
            kind = fault["kind"] if fault else None
            if kind == "duplicate" and 0 < cur <= len(rows):
                page.insert(0, rows[cur - 1])
            elif kind == "total_change":
                total += int(fault.get("delta", 1))
            data = [_json(c) for c in page]
            if kind == "bad_record" and data:
                idx = min(int(fault.get("index", 1)), len(data) - 1)
                d = dict(page[idx])
                if fault.get("variant") == "missing_id":
                    d.pop("categoryId", None)
                else:
                    d["categoryId"] = {"value": d.get("categoryId")}
                    d["categoryName"] = 12345
                data[idx] = _json(d)
            removed = self._removed_part(ret, q, since, cur, True)
        ts = catmod.fmt_ts(catmod.now_ticks())
        return b"".join((b'{"total":', str(total).encode(), b',"pageSize":', str(size).encode(),
                         b',"data":[', b",".join(data), b"]", removed,
                         b',"timestamp":"', ts.encode(), b'"}'))

    def _branches(self, ret, q):
        """GET /branches: active branches changed since lastModifiedFrom, by id; removedIds
        (includeRemoveIds) are the branches made inactive since then."""
        size, cur = _q_page(q, self.server.state.config["page_cap"])
        since = _q_since(q)
        cat = ret.catalog
        with cat.lock:
            depth.state(cat)
            rows = depth.query_branches(cat, since)
            removed = depth.removed_branches_since(cat, since) if _q_bool(q, "includeremoveids") \
                else None
        body = {"total": len(rows), "pageSize": size, "data": rows[cur:cur + size]}
        if removed is not None and cur == 0:
            body["removedIds"] = removed
        body["timestamp"] = catmod.fmt_ts(catmod.now_ticks())
        return _json(body)

    def _pricebooks(self, ret, q):
        """GET /pricebooks: every price book (no branch, group or user lists)."""
        size, cur = _q_page(q, self.server.state.config["page_cap"])
        cat = ret.catalog
        with cat.lock:
            depth.state(cat)
            rows = [dict(cat.pricebooks[b]) for b in sorted(cat.pricebooks)]
        return _json({"total": len(rows), "pageSize": size, "data": rows[cur:cur + size],
                      "timestamp": catmod.fmt_ts(catmod.now_ticks())})

    @staticmethod
    def _with_books(cat, pid, q):
        """A product's detail, with its priceBooks when includePricebook=true."""
        body = cat.product_json(pid, True, _q_bool(q, "includeserials"))
        if not _q_bool(q, "includepricebook"):
            return body
        return body[:-1] + depth.pricebooks_json(depth.state(cat), pid) + b"}"

    def _detail(self, ret, route, arg, q):
        cat = ret.catalog
        with cat.lock:
            if route == "/products/code/{code}":
                pid = cat.code_index.get(arg.casefold())
                if pid is None:
                    raise ApiError(404, "NotFound", "Không tìm thấy hàng hóa mã '%s'" % arg)
                return self._with_books(cat, pid, q)
            try:
                num = int(arg)
            except ValueError:
                raise ApiError(400, "RequestBindingException",
                               "Unable to bind request: id '%s' is not a number" % arg) from None
            if route == "/products/{id}":
                if num not in cat.products:
                    raise ApiError(404, "NotFound", "Không tìm thấy hàng hóa id %d" % num)
                return self._with_books(cat, num, q)
            if num not in cat.categories:
                raise ApiError(404, "NotFound", "Không tìm thấy nhóm hàng id %d" % num)
            return _json(cat.categories[num])

    def _answer(self, status, body, fault):
        """Sends a rendered answer, altered by a response-level fault if any."""
        if isinstance(body, tuple):
            body = body[0]
        kind = fault["kind"] if fault else None
        if kind == "malformed":
            body = body[:40] + b'<<kvsim: not json>>,]"\x00{'
        elif kind == "truncate":
            body = body[:len(body) // 2]
        elif kind == "no_data":
            # A 200 answer without the "data" array (and, with "total": false, without total).
            obj = json.loads(body)
            obj.pop("data", None)
            if fault.get("total") is False:
                obj.pop("total", None)
            body = _json(obj)
        elif kind == "stall":
            head = self._head_bytes(status, len(body), None, "application/json; charset=utf-8")
            part = head + body[:max(1, len(body) // 2)]
            self._status = status
            self._nbytes += len(part)
            self._account()
            self.wfile.write(part)
            self.server.state.stop.wait(float(fault.get("seconds", 30)))
            self.close_connection = True
            self.server.abort_socket(self.connection, rst=False)
            return
        self._send(status, body)

    # ---- control API -------------------------------------------------------------------

    def _control(self, method, lpath, q, body):
        state = self.server.state
        try:
            req = json.loads(body.decode() or "null") if body else None
        except ValueError:
            raise ApiError(400, "BadRequest", "body is not JSON") from None
        name = q.get("retailer")
        if isinstance(req, dict) and "retailer" in req and lpath != "/_sim/config":
            name = req.get("retailer")
        op = lpath[len("/_sim/"):]
        if op == "health":
            return self._send_obj(200, {"ok": True})
        if op == "retailers":
            return self._send_obj(200, [{"name": r.name, "retailerId": r.retailer_id,
                                         "products": len(r.catalog.products)}
                                        for r in state.retailers.values()])
        if op == "stats" and method == "GET":
            return self._send_obj(200, state.stats_view(name))
        if op == "stats/reset" and method == "POST":
            state.reset_stats()
            return self._send_obj(200, {"ok": True})
        if op == "catalog" and method == "GET":
            ret = state.retailer(name)
            return self._send(200, _json(ret.catalog.truth()))
        if op == "credentials" and method == "GET":
            ret = state.retailer(name)
            return self._send_obj(200, {"retailer": ret.name, "client_id": ret.client_id,
                                        "client_secret": ret.client_secret})
        if op == "mutate" and method == "POST":
            spec = dict(req or {})
            spec.pop("retailer", None)
            ret = state.retailer(name)
            try:
                out = {}
                cat = ret.catalog
                for key, fn in depth.MUTATIONS.items():
                    if key in spec:
                        with cat.lock:
                            out[key] = fn(depth.state(cat), spec.pop(key))
                out.update(ret.catalog.mutate(spec) if spec or not out else {})
            except (KeyError, ValueError, TypeError) as e:
                raise ApiError(400, "BadRequest", "mutate: %s" % e) from None
            return self._send_obj(200, out)
        if op == "faults":
            if method == "POST":
                n = state.add_faults(req)
                return self._send_obj(200, {"ok": True, "added": n})
            if method == "DELETE":
                with state.lock:
                    state.faults = []
                return self._send_obj(200, {"ok": True})
            if method == "GET":
                with state.lock:
                    view = [{k.lstrip("_"): v for k, v in r.items()} for r in state.faults]
                return self._send_obj(200, view)
        if op == "config":
            if method == "POST":
                self._set_config(req or {})
            cfg = dict(state.config)
            return self._send_obj(200, cfg)
        if op == "webhooks" and method == "GET":
            return self._send_obj(200, state.hooks.secrets(state.retailer(name)))
        if op == "webhooks/config":
            try:
                cfg = state.hooks.set_config(req) if method == "POST" else \
                    dict(state.hooks.config)
            except ValueError as e:
                raise ApiError(400, "BadRequest", str(e)) from None
            return self._send_obj(200, cfg)
        if op == "webhooks/log" and method == "GET":
            return self._send_obj(200, state.hooks.log_view())
        if op == "webhooks/flush" and method == "POST":
            state.hooks.flush()
            return self._send_obj(200, {"ok": True})
        if op == "tokens/expire" and method == "POST":
            with state.lock:
                state.tokens = {t: (r, 0.0) for t, (r, _) in state.tokens.items()}
            return self._send_obj(200, {"ok": True})
        if op == "reset" and method == "POST":
            for r in state.retailers.values():
                with r.catalog.lock:
                    r.regenerate()
                    r.default_credentials()
            with state.lock:
                state.faults = []
            state.hooks.reset()
            state.reset_config()
            state.reset_stats()
            return self._send_obj(200, {"ok": True})
        raise ApiError(404, "NotFound", "unknown control call %s %s" % (method, lpath))

    def _set_config(self, req):
        state = self.server.state
        if not isinstance(req, dict):
            raise ApiError(400, "BadRequest", "config: expected an object")
        new = dict(state.config)
        for k, v in req.items():
            if k == "credentials":
                creds = v if isinstance(v, list) else [v]
                for c in creds:
                    r = state.retailer(c.get("retailer"))
                    if "client_id" in c:
                        r.client_id = str(c["client_id"])
                    if "client_secret" in c:
                        r.client_secret = str(c["client_secret"])
                continue
            if k not in new:
                raise ApiError(400, "BadRequest", "config: unknown key %r" % k)
            if k in ("latency_ms", "token_ttl"):
                if not isinstance(v, (int, float)) or v < 0:
                    raise ApiError(400, "BadRequest", "config: %s must be a number >= 0" % k)
            elif k == "page_cap":
                if not isinstance(v, int) or not 1 <= v <= 100:
                    raise ApiError(400, "BadRequest", "config: page_cap must be an int 1..100")
            elif k == "budget":
                if not isinstance(v, int) or v < 0:
                    raise ApiError(400, "BadRequest", "config: budget must be an int >= 0")
            elif k == "onhand_key":
                if v not in ("onHand", "onhand"):
                    raise ApiError(400, "BadRequest", "config: onhand_key: onHand or onhand")
            elif k == "removed_key":
                if v not in REMOVED_KEYS:
                    raise ApiError(400, "BadRequest", "config: removed_key must be one of %s"
                                   % (REMOVED_KEYS,))
            elif not isinstance(v, bool):
                raise ApiError(400, "BadRequest", "config: %s must be a boolean" % k)
            new[k] = v
        state.config = new  # replaced whole, so handlers read a consistent dict


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, state, ssl_ctx):
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        self.state = state
        self.ssl_ctx = ssl_ctx
        super().__init__(addr, Handler)

    def finish_request(self, request, client_address):
        # TLS handshakes run here, in the connection's own thread, not in the accept loop.
        if self.ssl_ctx is None:
            self.RequestHandlerClass(request, client_address, self)
            return
        try:
            request.settimeout(15)
            tls = self.ssl_ctx.wrap_socket(request, server_side=True)
            tls.settimeout(None)
        except (ssl.SSLError, OSError):
            return  # e.g. the client does not trust our CA
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            self.abort_socket(tls, rst=False)

    @staticmethod
    def abort_socket(sock, rst=True):
        if not rst:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            sock.close()
        except OSError:
            pass

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, ssl.SSLError, TimeoutError, socket.timeout)):
            return
        super().handle_error(request, client_address)


# ---------------------------------------------------------------------------------------------
# Certificates
# ---------------------------------------------------------------------------------------------

def ensure_certs(cert_dir):
    """A CA and a server cert for 127.0.0.1, ::1 and localhost, created once per directory."""
    import fcntl
    os.makedirs(cert_dir, exist_ok=True)
    ca, crt, key = (os.path.join(cert_dir, n) for n in ("ca.pem", "server.pem", "server.key"))
    with open(os.path.join(cert_dir, ".lock"), "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)  # parallel simulators share the directory
        if all(os.path.exists(p) for p in (ca, crt, key)):
            return ca, crt, key
        ca_key = os.path.join(cert_dir, "ca.key")
        csr = os.path.join(cert_dir, "server.csr")
        ext = os.path.join(cert_dir, "server.ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\n"
                    "subjectKeyIdentifier=hash\n"
                    "authorityKeyIdentifier=keyid,issuer\n"
                    "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        run = lambda *a: subprocess.run(["openssl"] + list(a), check=True,  # noqa: E731
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        run("req", "-x509", *ec, "-keyout", ca_key, "-out", ca + ".tmp", "-days", "3650",
            "-subj", "/CN=kvsim test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        run("req", *ec, "-keyout", key + ".tmp", "-out", csr, "-subj", "/CN=localhost")
        run("x509", "-req", "-in", csr, "-CA", ca + ".tmp", "-CAkey", ca_key,
            "-CAcreateserial", "-out", crt + ".tmp", "-days", "3650", "-extfile", ext)
        for p in (key, crt, ca):  # ca.pem last: its presence means "complete"
            os.replace(p + ".tmp", p)
        os.chmod(key, 0o600)
        return ca, crt, key


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description="KiotViet Public API simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--retailer", action="append", help="retailer name (repeatable)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--products", type=int, default=None)
    p.add_argument("--demo", action="store_true", help="demo preset (~3000 products)")
    p.add_argument("--serial-share", type=float, default=0.1,
                   help="share of serial-tracked products (issue 16's bench: 0.34)")
    p.add_argument("--latency-ms", type=float, default=0)
    p.add_argument("--budget", type=int, default=5000)
    p.add_argument("--page-cap", type=int, default=100,
                   help="largest pageSize served (the answer echoes it); below what a client "
                        "asks for, it serves fewer rows than asked (config key page_cap)")
    p.add_argument("--token-ttl", type=float, default=86400)
    p.add_argument("--https", action="store_true")
    p.add_argument("--cert-dir", default=None)
    p.add_argument("--prewarm", choices=("background", "sync", "off"), default="background",
                   help="render every product's JSON in a background thread after startup "
                   "(default), before reporting ready (sync), or only on demand (off)")
    p.add_argument("--stdin-watch", action="store_true",
                   help="exit when stdin reaches EOF (the parent died)")
    p.add_argument("--verbose", action="store_true")
    a = p.parse_args(argv)
    if a.products is None:
        a.products = 3000 if a.demo else 300
    if a.host not in ("127.0.0.1", "::1", "localhost"):
        p.error("--host must be a loopback address")
    return a


def main(argv=None):
    args = parse_args(argv)
    ssl_ctx = None
    ca = None
    if args.https:
        cert_dir = args.cert_dir or os.path.join(
            os.environ.get("TMPDIR", "/tmp"), "kvsim-certs-%d" % os.getuid())
        ca, crt, key = ensure_certs(cert_dir)
        ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ssl_ctx.load_cert_chain(crt, key)
        ssl_ctx.set_alpn_protocols(["http/1.1"])
    state = State(args)
    host = "127.0.0.1" if args.host == "localhost" else args.host
    srv = Server((host, args.port), state, ssl_ctx)
    port = srv.server_address[1]

    def on_signal(signum, frame):
        state.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.stdin_watch:
        def watch():
            # raw fd reads: a daemon thread blocked in a buffered reader aborts interpreter exit
            try:
                while os.read(0, 4096):
                    pass
            except OSError:
                pass
            state.stop.set()
        threading.Thread(target=watch, daemon=True).start()

    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    t.start()
    urlhost = "[%s]" % host if ":" in host else host
    print(json.dumps({"port": port, "url": "%s://%s:%d" % ("https" if args.https else "http",
                                                          urlhost, port), "ca": ca}),
          flush=True)
    while not state.stop.wait(1.0):
        pass
    srv.shutdown()
    srv.server_close()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: freeing a 100k-product catalogue object by object takes
    # seconds and there is nothing else to clean up (sockets close with the process).
    os._exit(0)


if __name__ == "__main__":
    main()
