/* webhook_parse: the pure parts of the webhook side (see webhook.h): the X-Hub-Signature check
 * and the envelope fields the inbox keeps. No I/O, no state: unit-tested and fuzzed. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "webhook.h"

#define SIG_LEN 32 /* SHA-256 */

static int hex_val(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = (char)tolower((unsigned char)c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

bool webhook_signature_ok(const char *header, const char *secret, const void *body, size_t len)
{
    if (!header || !secret || !*secret) return false;
    const char *p = header + strspn(header, " \t");
    if (!strncasecmp(p, "sha256=", 7))
        p += 7;
    else if (!strncasecmp(p, "sha1=", 5)) /* KiotViet's label; the digest is SHA-256 */
        p += 5;
    size_t n = strcspn(p, " \t");
    if (n != 2 * SIG_LEN || p[n + strspn(p + n, " \t")] != '\0') return false;
    unsigned char want[SIG_LEN];
    for (size_t i = 0; i < SIG_LEN; i++) {
        int hi = hex_val(p[2 * i]), lo = hex_val(p[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        want[i] = (unsigned char)(hi << 4 | lo);
    }
    unsigned char got[EVP_MAX_MD_SIZE];
    unsigned int got_len = 0;
    if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), body, len, got, &got_len) ||
        got_len != SIG_LEN)
        return false;
    bool ok = CRYPTO_memcmp(got, want, SIG_LEN) == 0;
    OPENSSL_cleanse(got, sizeof got);
    return ok;
}

/* The hex SHA-256 of the body: the event id of an envelope without a usable Id. */
static void body_hash(const char *body, size_t len, char *out, size_t cap)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    out[0] = '\0';
    if (!EVP_Digest(body, len, md, &n, EVP_sha256(), NULL)) return;
    for (unsigned i = 0; i < n && 2 * i + 2 < cap; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* The member of obj called name, in any case (KiotViet mixes "Id", "isActive", ...). */
static const cJSON *member(const cJSON *obj, const char *name)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, obj)
        if (it->string && !strcasecmp(it->string, name)) return it;
    return NULL;
}

/* "product.update.500400541" -> "product.update" in out: the letters-and-underscores words
 * before a final all-digit one; false for anything else (such a type is not kept). */
static bool action_type(const char *action, char *out, size_t cap)
{
    size_t n = strlen(action);
    const char *dot = strrchr(action, '.');
    if (dot && dot[1] && strspn(dot + 1, "0123456789") == strlen(dot + 1)) n = (size_t)(dot - action);
    if (n == 0 || n >= cap || n > 64) return false;
    int dots = 0;
    for (size_t i = 0; i < n; i++) {
        char c = action[i];
        if (c == '.') {
            if (i == 0 || i + 1 == n || action[i - 1] == '.') return false;
            dots++;
        } else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_')) {
            return false;
        }
    }
    if (dots != 1) return false;
    for (size_t i = 0; i < n; i++) out[i] = (char)tolower((unsigned char)action[i]);
    out[n] = '\0';
    return true;
}

/* Appends type to the comma-separated list unless it is there already or would not fit. */
static void types_add(webhook_envelope *e, const char *type)
{
    size_t tl = strlen(type), len = strlen(e->types);
    for (const char *p = e->types; *p;) {
        size_t wl = strcspn(p, ",");
        if (wl == tl && !memcmp(p, type, tl)) return;
        p += wl + (p[wl] == ',');
    }
    if (len + (len ? 1 : 0) + tl >= sizeof e->types) return;
    snprintf(e->types + len, sizeof e->types - len, "%s%s", len ? "," : "", type);
    e->ntypes++;
}

static bool id_usable(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > WEBHOOK_ID_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e) return false;
    return true;
}

int webhook_envelope_parse(const char *body, size_t len, webhook_envelope *out)
{
    memset(out, 0, sizeof *out);
    out->attempt = 1;
    body_hash(body, len, out->event_id, sizeof out->event_id);
    cJSON *j = cJSON_ParseWithLength(body, len);
    int rc = -EINVAL;
    if (!cJSON_IsObject(j)) goto out;
    const cJSON *id = member(j, "Id");
    if (cJSON_IsString(id) && id_usable(id->valuestring))
        snprintf(out->event_id, sizeof out->event_id, "%s", id->valuestring);
    const cJSON *att = member(j, "Attempt");
    if (cJSON_IsNumber(att) && att->valuedouble >= 1 && att->valuedouble <= 1000000)
        out->attempt = (int)att->valuedouble;
    const cJSON *notes = member(j, "Notifications");
    if (!cJSON_IsArray(notes)) goto out;
    const cJSON *n;
    cJSON_ArrayForEach(n, notes) {
        const cJSON *action = cJSON_IsObject(n) ? member(n, "Action") : NULL;
        char type[WEBHOOK_TYPES_MAX];
        if (cJSON_IsString(action) && action_type(action->valuestring, type, sizeof type))
            types_add(out, type);
    }
    rc = 0;
out:
    cJSON_Delete(j);
    return rc;
}
