"""Helpers to run the real kiotviet-syncd binary against the test PostgreSQL and the simulator."""

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("KVS_BIN", str(ROOT / "build" / "kiotviet-syncd"))


def write_config(path, dsn, **sections):
    """Writes an INI file. sections: {"sync": {"poll_interval": 1}, ...}."""
    text = ["[database]", f"url = {dsn}"]
    for sec, kv in sections.items():
        text.append(f"[{sec}]")
        for k, v in kv.items():
            text.append(f"{k} = {v}")
    Path(path).write_text("\n".join(text) + "\n")
    os.chmod(path, 0o600)
    return str(path)


def base_args():
    args = [BIN]
    if os.geteuid() == 0:
        args.append("--allow-root")
    return args


def setup_integration(db, sim, retailer="demoshop", name="kiotviet", interval=60, enabled=True,
                      insert=False):
    """Points the integration `name` at the simulator (creating the row when insert)."""
    cid, secret = sim.credentials(retailer)
    if insert:
        db.sql("INSERT INTO public.third_party_integrations (name, display_name, api_url, token_url,"
               " client_id, client_secret, retailer, sync_enabled, sync_interval_minutes)"
               " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
               name, name, sim.url, sim.url + "/connect/token", cid, secret, retailer, enabled,
               interval)
    else:
        db.sql("UPDATE public.third_party_integrations SET api_url = %s, token_url = %s,"
               " client_id = %s, client_secret = %s, retailer = %s, sync_enabled = %s,"
               " sync_interval_minutes = %s WHERE name = %s RETURNING id",
               sim.url, sim.url + "/connect/token", cid, secret, retailer, enabled, interval, name)
    return db.value("SELECT id::text FROM public.third_party_integrations WHERE name = %s", name)


def text_of(data, what="the daemon's output"):
    """The daemon's output (bytes) as text. It must be UTF-8: bytes from KiotViet or the
    database are made valid before they are logged, so anything else fails the test here, with
    the bytes shown, instead of crashing it with a UnicodeDecodeError somewhere else."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise AssertionError(f"{what} is not UTF-8 ({e}): {data[-2000:]!r}") from None


class Result:
    def __init__(self, rc, out, err):
        self.rc, self.out, self.err = rc, out, err

    def __repr__(self):
        return f"Result(rc={self.rc}, out={self.out!r}, err={self.err[-3000:]!r})"


def ctl(*args, timeout=60):
    """Runs `kiotviet-syncd ARGS...` (a subcommand such as status or sync, or a check) without
    DATABASE_URL from our environment, and returns its exit code and output."""
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)
    p = subprocess.run([BIN, *args], capture_output=True, timeout=timeout, env=env)
    return Result(p.returncode, text_of(p.stdout, "stdout"), text_of(p.stderr, "stderr"))


def run_once(config, *extra, timeout=120, env=None):
    """Runs `kiotviet-syncd -c config --once ...` and returns its exit code and output."""
    e = dict(os.environ)
    e.pop("DATABASE_URL", None)
    e.pop("NOTIFY_SOCKET", None)
    if env:
        e.update(env)
    p = subprocess.run(base_args() + ["-c", config, "--once", *extra], capture_output=True,
                       timeout=timeout, env=e)
    return Result(p.returncode, text_of(p.stdout, "stdout"), text_of(p.stderr, "stderr"))


def last_log(db, integration="kiotviet"):
    rows = db.sql(
        "SELECT l.status, l.sync_type, l.products_synced, l.products_created, l.products_updated,"
        " l.products_failed, l.products_deactivated, l.categories_synced, l.categories_created,"
        " l.categories_updated, l.categories_failed, l.categories_deactivated, l.error_message,"
        " l.error_details, l.completed_at IS NOT NULL, l.requests_made"
        " FROM public.sync_logs l JOIN public.third_party_integrations i ON i.id = l.integration_id"
        " WHERE i.name = %s ORDER BY l.id DESC LIMIT 1", integration)
    if not rows:
        return None
    keys = ["status", "sync_type", "products_synced", "products_created", "products_updated",
            "products_failed", "products_deactivated", "categories_synced", "categories_created",
            "categories_updated", "categories_failed", "categories_deactivated", "error_message",
            "error_details", "completed", "requests_made"]
    return dict(zip(keys, rows[0]))


class NotifySocket:
    """An AF_UNIX datagram socket the test owns, handed to the daemon as NOTIFY_SOCKET."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="kvs-notify-")
        os.chmod(self.dir, 0o777)
        self.path = os.path.join(self.dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o777)
        self.messages = []

    def wait_for(self, predicate, timeout=30):
        """Reads messages until one satisfies predicate(msg_dict); returns it."""
        deadline = time.monotonic() + timeout
        for m in self.messages:
            if predicate(m):
                self.messages.remove(m)
                return m
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no matching sd_notify message; got %r" % self.messages[-10:])
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536).decode()
            except socket.timeout:
                continue
            m = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
            if predicate(m):
                return m
            self.messages.append(m)

    def close(self):
        self.sock.close()
        try:
            os.unlink(self.path)
            os.rmdir(self.dir)
        except OSError:
            pass


class Daemon:
    """kiotviet-syncd running in the background (daemon mode); stderr goes to a file."""

    def __init__(self, config, notify=None, extra=(), env=None):
        self.logpath = tempfile.mktemp(prefix="kvsd-", suffix=".log")
        self.logf = open(self.logpath, "wb")
        e = dict(os.environ)
        e.pop("DATABASE_URL", None)
        e.pop("NOTIFY_SOCKET", None)
        if notify:
            e["NOTIFY_SOCKET"] = notify.path
        if env:
            e.update(env)
        self.proc = subprocess.Popen(base_args() + ["-c", config, *extra], stdout=self.logf,
                                     stderr=subprocess.STDOUT, env=e)

    def log(self):
        with open(self.logpath, "rb") as f:
            return text_of(f.read(), "the daemon's log")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()
        return self.proc.returncode

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self.logf.close()


def listen_port(d, which="webhook"):
    """The port a daemon's listener (webhook or metrics) bound, from its log line."""
    import re
    m = wait_until(lambda: re.search(rf"{which} listener listening on \S+ \(port (\d+)\)", d.log()),
                   timeout=30, what=f"the {which} listener")
    return int(m.group(1))


def wait_until(pred, timeout=30, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)
