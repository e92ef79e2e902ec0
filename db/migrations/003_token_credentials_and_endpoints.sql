-- kiotviet-sync migration 003: a cached token is tied to the credentials it was issued for, and
-- KiotViet's endpoints are column defaults. Idempotent: safe to run any number of times; apply
-- after add_kiotviet_integration.sql and 002 (README: "Upgrading").
--
-- 1. token_credentials_hash: the hex SHA-256 of [token_url, client_id, client_secret, retailer]
--    (as a JSON array) that access_token was issued for. The daemon uses a stored token only
--    while the row's credentials still hash to it, so changing any of the four drops the token at
--    once (before, a revoked or regenerated secret surfaced only when the token expired, up to a
--    day later). Tokens stored before this migration have no hash: one new token is fetched.
ALTER TABLE public.third_party_integrations
    ADD COLUMN IF NOT EXISTS token_credentials_hash text;

-- 2. api_url and token_url default to KiotViet's public endpoints, so that a row inserted with
--    only a name and credentials (README step 4, "several KiotViet shops") works as is; rows
--    named kiotviet* that left them NULL or empty get them.
ALTER TABLE public.third_party_integrations
    ALTER COLUMN api_url SET DEFAULT 'https://public.kiotapi.com',
    ALTER COLUMN token_url SET DEFAULT 'https://id.kiotviet.vn/connect/token';

UPDATE public.third_party_integrations
   SET api_url   = CASE WHEN coalesce(api_url, '') = '' THEN 'https://public.kiotapi.com'
                        ELSE api_url END,
       token_url = CASE WHEN coalesce(token_url, '') = '' THEN 'https://id.kiotviet.vn/connect/token'
                        ELSE token_url END
 WHERE name LIKE 'kiotviet%'
   AND (coalesce(api_url, '') = '' OR coalesce(token_url, '') = '');

-- Verification (expected: token_credentials_hash | text, and both defaults):
--   SELECT column_name, data_type, column_default FROM information_schema.columns
--    WHERE table_schema = 'public' AND table_name = 'third_party_integrations'
--      AND column_name IN ('token_credentials_hash', 'api_url', 'token_url') ORDER BY 1;
