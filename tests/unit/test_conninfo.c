/* Unit tests for db_conninfo_check (db.c): the [database] url shapes an unencoded '%', '@' or
 * '/' in a password produce are refused, named by their part and never quoted; the URLs people
 * really use (multi-host, IPv6, sockets, keyword form, encoded passwords) are not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "db.h"

static void test_refused_named_never_quoted(void **state)
{
    (void)state;
    static const struct {
        const char *url, *want, *secret;
    } cases[] = {
        {"postgresql://u:Sup3r%zzSecretPw@h/db", "the password has a '%'", "SecretPw"},
        {"postgresql://u:Secr@tPw99@host/db", "the host holds an '@'", "tPw99"},
        {"postgresql://u:Secr/tPw99@host/db", "the port is not a number", "Secr"},
        {"postgresql://u:9/tPw99@host/db", "the database name holds an '@'", "tPw99"},
        {"postgres://u%zz:pw@h/db", "the user name has a '%'", "u%zz"},
        {"postgresql://u:pw@h/db%4", "the database name has a '%'", "db%4"},
        {"postgresql://u:pw@h/db?sslmode=require%", "a query parameter has a '%'", "require%"},
        {"postgresql://u:p%00w@h/db", "the password has a '%'", "p%00w"},
        {"host=h password=Secr tPw99", "cannot parse it as key=value settings", "tPw99"},
        {"host=h password='unterminated", "cannot parse it as key=value settings", "unterm"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char why[300] = "";
        int rc = db_conninfo_check(cases[i].url, why, sizeof why);
        if (rc != -EINVAL || !strstr(why, cases[i].want))
            fail_msg("%s: rc %d, '%s'; want '%s'", cases[i].url, rc, why, cases[i].want);
        if (strstr(why, cases[i].secret)) fail_msg("%s: quoted: %s", cases[i].url, why);
    }
}

static void test_real_urls_accepted(void **state)
{
    (void)state;
    static const char *const ok[] = {
        "postgresql://postgres.abcdefghij:p%40ss%2Fw%3Ard%25@aws-0-eu-central-1.pooler.supabase.com"
        ":6543/postgres?sslmode=require",
        "postgresql://u@h1:5432,h2:5433/db?target_session_attrs=read-write",
        "postgresql://[::1]:5432/db",
        "postgresql:///db?host=/var/run/postgresql",
        "postgresql://user%40server:pw@host/db",
        "postgres://localhost",
        "host=/tmp port=5432 dbname=shop user=kv password='a b@c/d'",
        "dbname=x",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char why[300] = "";
        if (db_conninfo_check(ok[i], why, sizeof why)) fail_msg("%s refused: %s", ok[i], why);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused_named_never_quoted),
        cmocka_unit_test(test_real_urls_accepted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
