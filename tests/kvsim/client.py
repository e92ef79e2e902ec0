"""Start/stop the KiotViet simulator as a subprocess and drive its control API.

    from kvsim.client import Sim          # with tests/ on sys.path
    with Sim(products=300, seed=1) as sim:
        cid, secret = sim.credentials("demoshop")
        status, headers, body = sim.api_get("/products", params={"pageSize": 100})

Standard library only (urllib, http.client); HTTPS control calls trust the generated CA.
"""

import http.client
import json
import os
import selectors
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

PYTHON = "/usr/bin/python3"
KVSIM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kvsim.py")


class SimError(RuntimeError):
    pass


class Sim:
    """A running simulator. Starts in the constructor; use as a context manager or close()."""

    def __init__(self, products=300, seed=1, retailers=("demoshop",), https=False,
                 extra_args=(), cert_dir=None, demo=False, startup_timeout=120):
        self.retailers = tuple(retailers)
        self.https = https
        args = [PYTHON, KVSIM, "--port", "0", "--seed", str(seed), "--stdin-watch"]
        if demo:
            args.append("--demo")
        else:
            args += ["--products", str(products)]
        for r in self.retailers:
            args += ["--retailer", r]
        if https:
            args.append("--https")
            if cert_dir:
                args += ["--cert-dir", cert_dir]
        args += list(extra_args)
        # stdin stays open as a pipe: if this process dies, the simulator sees EOF and exits.
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._tokens = {}
        try:
            ready = self._read_ready(startup_timeout)
        except BaseException:
            self.close()
            raise
        self.port = ready["port"]
        self.url = ready["url"]
        self.ca = ready.get("ca")
        self._ssl = ssl.create_default_context(cafile=self.ca) if self.ca else None

    def _read_ready(self, timeout):
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        buf = b""
        try:
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SimError("kvsim did not become ready in %ss" % timeout)
                if not sel.select(left):
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    raise SimError("kvsim exited during startup (rc=%s)" % self.proc.wait())
                buf += chunk
        finally:
            sel.close()
        return json.loads(buf.split(b"\n", 1)[0])

    # ---- lifecycle ----------------------------------------------------------------------

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        p = getattr(self, "proc", None)
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        for f in (p.stdin, p.stdout):
            try:
                f.close()
            except OSError:
                pass

    # ---- control API --------------------------------------------------------------------

    def _call(self, method, path, body=None, params=None):
        url = self.url + path
        if params:
            url += "?" + urllib.parse.urlencode({k: v for k, v in params.items()
                                                 if v is not None})
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120, context=self._ssl) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise SimError("%s %s -> %d %s" % (method, path, e.code,
                                               e.read().decode("utf-8", "replace"))) from None

    def health(self):
        return self._call("GET", "/_sim/health")

    def stats(self, retailer=None):
        return self._call("GET", "/_sim/stats", params={"retailer": retailer})

    def reset_stats(self):
        return self._call("POST", "/_sim/stats/reset", {})

    def catalog(self, retailer=None):
        return self._call("GET", "/_sim/catalog",
                          params={"retailer": retailer or self.retailers[0]})

    def mutate(self, retailer=None, **kw):
        body = dict(kw)
        body["retailer"] = retailer or self.retailers[0]
        return self._call("POST", "/_sim/mutate", body)

    def faults(self, rules):
        return self._call("POST", "/_sim/faults", list(rules))

    def fault_list(self):
        return self._call("GET", "/_sim/faults")

    def clear_faults(self):
        return self._call("DELETE", "/_sim/faults")

    def config(self, **kw):
        return self._call("POST", "/_sim/config", kw)

    def reset(self):
        self._tokens.clear()
        return self._call("POST", "/_sim/reset", {})

    def expire_tokens(self):
        return self._call("POST", "/_sim/tokens/expire", {})

    def credentials(self, retailer=None):
        c = self._call("GET", "/_sim/credentials",
                       params={"retailer": retailer or self.retailers[0]})
        return c["client_id"], c["client_secret"]

    # webhooks (tests/kvsim/webhooks.py)
    def webhooks(self, retailer=None):
        """The retailer's registered hooks, secrets included."""
        return self._call("GET", "/_sim/webhooks",
                          params={"retailer": retailer or self.retailers[0]})

    def webhook_config(self, **kw):
        return self._call("POST", "/_sim/webhooks/config", kw)

    def webhook_log(self):
        return self._call("GET", "/_sim/webhooks/log")

    def webhook_flush(self):
        return self._call("POST", "/_sim/webhooks/flush", {})

    # ---- KiotViet API convenience (for tests) ---------------------------------------------

    def connection(self, timeout=30):
        """A keep-alive http.client connection to the simulator."""
        host, port = "127.0.0.1", self.port
        if self.https:
            return http.client.HTTPSConnection(host, port, timeout=timeout, context=self._ssl)
        return http.client.HTTPConnection(host, port, timeout=timeout)

    def token(self, retailer=None, fresh=False):
        retailer = retailer or self.retailers[0]
        if fresh or retailer not in self._tokens:
            cid, sec = self.credentials(retailer)
            form = urllib.parse.urlencode({"scopes": "PublicApi.Access",
                                           "grant_type": "client_credentials",
                                           "client_id": cid, "client_secret": sec}).encode()
            req = urllib.request.Request(self.url + "/connect/token", data=form, headers={
                "Content-Type": "application/x-www-form-urlencoded"})
            with urllib.request.urlopen(req, timeout=30, context=self._ssl) as r:
                self._tokens[retailer] = json.loads(r.read())["access_token"]
        return self._tokens[retailer]

    def api_get(self, path, params=None, retailer=None, token=None, headers=None, conn=None):
        """GET an API path; returns (status, headers dict with lower-case names, body bytes)."""
        retailer = retailer or self.retailers[0]
        h = {"Retailer": retailer,
             "Authorization": "Bearer " + (token or self.token(retailer))}
        h.update(headers or {})
        url = path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        own = conn is None
        c = conn or self.connection()
        try:
            c.request("GET", url, headers=h)
            r = c.getresponse()
            body = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, body
        finally:
            if own:
                c.close()

    def api_call(self, method, path, body=None, retailer=None):
        """An authenticated API call with a JSON body; returns (status, parsed body)."""
        retailer = retailer or self.retailers[0]
        h = {"Retailer": retailer, "Authorization": "Bearer " + self.token(retailer),
             "Content-Type": "application/json"}
        c = self.connection()
        try:
            c.request(method, path, body=None if body is None else json.dumps(body), headers=h)
            r = c.getresponse()
            return r.status, json.loads(r.read() or b"null")
        finally:
            c.close()

    def api_json(self, path, params=None, retailer=None, **kw):
        status, _, body = self.api_get(path, params, retailer, **kw)
        if status != 200:
            raise SimError("GET %s -> %d %s" % (path, status, body[:300]))
        return json.loads(body)
