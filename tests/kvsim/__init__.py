"""KiotViet Public API simulator (kvsim.py), its catalogue (catalog.py) and test helper (client.py)."""
