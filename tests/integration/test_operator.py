"""Issue 17 ("Operator truth"): behaviour the documentation revealed.

- a cached token is tied to the credentials it was issued for (migration 003's
  token_credentials_hash): changing client_id, client_secret, retailer or token_url drops it;
- api_url / token_url default to KiotViet's endpoints (migration 003);
- every mode reads the same default configuration and reports its errors with file, line, key.
"""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kvsd  # noqa: E402
from kvsim.client import Sim  # noqa: E402

pytestmark = pytest.mark.parametrize("shop_shape", ["uuid"])


@pytest.fixture
def sim():
    with Sim(products=120, seed=3) as s:
        yield s


ctl = kvsd.ctl


def token_row(db):
    return db.sql("SELECT access_token, token_credentials_hash FROM public.third_party_integrations"
                  " WHERE name = 'kiotviet'")[0]


def test_token_is_dropped_when_the_credentials_change(shop_db, sim, tmp_path):
    cfg = kvsd.write_config(tmp_path / "c.conf", shop_db.dsn)
    kvsd.setup_integration(shop_db, sim)
    r = kvsd.run_once(cfg)
    assert r.rc == 0, r
    token, digest = token_row(shop_db)
    assert token and len(digest) == 64
    assert sim.stats("demoshop")["token_requests"] == 1
    # Same credentials: the stored token is reused.
    assert kvsd.run_once(cfg).rc == 0
    assert sim.stats("demoshop")["token_requests"] == 1

    # The secret is regenerated in KiotViet and typed into the row wrongly: the next run must
    # ask for a token with it (and fail), not keep using the token of the old secret.
    shop_db.sql("UPDATE public.third_party_integrations SET client_secret = 'not-the-secret'"
                " WHERE name = 'kiotviet'")
    st = json.loads(ctl("status", "-c", cfg, "--json").out)["integrations"][0]
    assert st["token"]["present"] is False, st["token"]
    r = kvsd.run_once(cfg)
    assert r.rc == 1, r
    assert "refused the credentials" in kvsd.last_log(shop_db)["error_message"]
    assert sim.stats("demoshop")["token_requests"] == 2

    # Back to the right secret: a token for it is fetched and stored with its hash.
    cid, secret = sim.credentials("demoshop")
    shop_db.sql("UPDATE public.third_party_integrations SET client_secret = %s WHERE name ="
                " 'kiotviet'", secret)
    assert kvsd.run_once(cfg).rc == 0
    token2, digest2 = token_row(shop_db)
    assert token2 and digest2 == digest  # the same credentials hash the same
    # A retailer change drops it too.
    shop_db.sql("UPDATE public.third_party_integrations SET retailer = 'othershop'"
                " WHERE name = 'kiotviet'")
    st = json.loads(ctl("status", "-c", cfg, "--json").out)["integrations"][0]
    assert st["token"]["present"] is False, st["token"]


def test_endpoints_default_to_kiotviet(shop_db):
    """README step 4: 'insert more rows whose name starts with kiotviet' with credentials only."""
    shop_db.sql("INSERT INTO public.third_party_integrations (name, client_id, client_secret,"
                " retailer) VALUES ('kiotviet-hanoi', 'id', 'secret', 'hanoishop')")
    api, tok = shop_db.sql("SELECT api_url, token_url FROM public.third_party_integrations"
                           " WHERE name = 'kiotviet-hanoi'")[0]
    assert api == "https://public.kiotapi.com"
    assert tok == "https://id.kiotviet.vn/connect/token"
