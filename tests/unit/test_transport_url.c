/* transport_url must mean to Nestor what it means to nova (oslo.messaging's
 * TransportURL.parse plus kombu's defaults), and errors must never show the
 * broker password. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "agent/transport_url.h"

struct expect_host {
        const char *host;
        int port;
        const char *user, *pass;
};

static void check(const char *text, bool tls, const char *vhost, size_t n,
                  const struct expect_host *hosts) {
        struct nst_transport_url u;
        struct nst_error err = NST_ERROR_INIT;
        int r = nst_transport_url_parse(text, &u, &err);
        if (r < 0)
                fail_msg("%s: %s", text, err.message);
        assert_false(nst_error_is_set(&err));
        if (u.tls != tls)
                fail_msg("%s: tls %d", text, u.tls);
        assert_string_equal(u.vhost, vhost);
        if (u.n_hosts != n)
                fail_msg("%s: %zu hosts", text, u.n_hosts);
        for (size_t i = 0; i < n; i++) {
                assert_string_equal(u.hosts[i].host, hosts[i].host);
                assert_int_equal(u.hosts[i].port, hosts[i].port);
                assert_string_equal(u.hosts[i].username, hosts[i].user);
                assert_string_equal(u.hosts[i].password, hosts[i].pass);
        }
        nst_transport_url_done(&u);
        assert_null(u.hosts);
}

#define HOSTS(...) (sizeof((struct expect_host[]){__VA_ARGS__}) / sizeof(struct expect_host)), \
                   (struct expect_host[]){__VA_ARGS__}

static void test_defaults(void **state) {
        check("rabbit://", false, "/", HOSTS({"localhost", 5672, "guest", "guest"}));
        check("rabbit:///", false, "/", HOSTS({"localhost", 5672, "guest", "guest"}));
        check("amqp://", false, "/", HOSTS({"localhost", 5672, "guest", "guest"}));
        check("amqps://", true, "/", HOSTS({"localhost", 5671, "guest", "guest"}));
        /* Unset: oslo's default transport_url. */
        check(NULL, false, "/", HOSTS({"localhost", 5672, "guest", "guest"}));
        /* Only commas: no host, so the default one. */
        check("rabbit://,,/", false, "/", HOSTS({"localhost", 5672, "guest", "guest"}));
}

static void test_single_host(void **state) {
        check("rabbit://nova:secret@ctl1:5672/", false, "/",
              HOSTS({"ctl1", 5672, "nova", "secret"}));
        check("rabbit://nova:secret@ctl1", false, "/", HOSTS({"ctl1", 5672, "nova", "secret"}));
        check("rabbit://nova:secret@ctl1:5673/nova", false, "nova",
              HOSTS({"ctl1", 5673, "nova", "secret"}));
        check("amqp://ctl1:1/", false, "/", HOSTS({"ctl1", 1, "guest", "guest"}));
        check("rabbit://ctl1:65535", false, "/", HOSTS({"ctl1", 65535, "guest", "guest"}));
        /* Empty port is the default one, as urlparse has it. */
        check("rabbit://ctl1:/", false, "/", HOSTS({"ctl1", 5672, "guest", "guest"}));
        check("amqps://u:p@broker.example.org/", true, "/",
              HOSTS({"broker.example.org", 5671, "u", "p"}));
        check("amqps://u:p@broker:5672/", true, "/", HOSTS({"broker", 5672, "u", "p"}));
        /* Scheme case does not matter (urlparse lowercases it). */
        check("RABBIT://ctl1", false, "/", HOSTS({"ctl1", 5672, "guest", "guest"}));
        check("AmQpS://ctl1", true, "/", HOSTS({"ctl1", 5671, "guest", "guest"}));
        /* Surrounding blanks from a config file are not part of it. */
        check("  rabbit://ctl1/v \t", false, "v", HOSTS({"ctl1", 5672, "guest", "guest"}));
}

static void test_vhosts(void **state) {
        const struct expect_host h[] = {{"h", 5672, "guest", "guest"}};
        check("rabbit://h", false, "/", 1, h);
        check("rabbit://h/", false, "/", 1, h);
        check("rabbit://h/%2F", false, "/", 1, h);
        check("rabbit://h/%2f", false, "/", 1, h);
        check("rabbit://h//", false, "/", 1, h);
        check("rabbit://h/nova", false, "nova", 1, h);
        check("rabbit://h/a%2Fb", false, "a/b", 1, h);
        check("rabbit://h/a/b", false, "a/b", 1, h);
        check("rabbit://h/with%20space", false, "with space", 1, h);
        /* '+' is literal in a path, unlike in a query. */
        check("rabbit://h/a+b", false, "a+b", 1, h);
        /* Malformed escapes stay as they are, as with Python's unquote. */
        check("rabbit://h/100%", false, "100%", 1, h);
        check("rabbit://h/%zz", false, "%zz", 1, h);
        check("rabbit://h/nova?x=1", false, "nova", 1, h);
        check("rabbit://h/nova#frag", false, "nova", 1, h);
        check("rabbit://h#frag", false, "/", 1, h);
        /* urlparse takes ";params" off the last path segment. */
        check("rabbit://h/nova;p=1", false, "nova", 1, h);
}

static void test_multiple_hosts(void **state) {
        check("rabbit://a:pa@h1:5672,b:pb@h2:5673,c:pc@h3/nova", false, "nova",
              HOSTS({"h1", 5672, "a", "pa"}, {"h2", 5673, "b", "pb"}, {"h3", 5672, "c", "pc"}));
        /* No inheritance: a host without credentials is guest, as kombu has it. */
        check("rabbit://user:pass@h1:5672,h2:5672/", false, "/",
              HOSTS({"h1", 5672, "user", "pass"}, {"h2", 5672, "guest", "guest"}));
        /* Empty entries are skipped. */
        check("rabbit://h1,,h2,/", false, "/",
              HOSTS({"h1", 5672, "guest", "guest"}, {"h2", 5672, "guest", "guest"}));
        check("amqps://h1,h2:1234", true, "/",
              HOSTS({"h1", 5671, "guest", "guest"}, {"h2", 1234, "guest", "guest"}));
}

static void test_credentials(void **state) {
        /* Only a user: kombu fills the empty password with guest. */
        check("rabbit://nova@h", false, "/", HOSTS({"h", 5672, "nova", "guest"}));
        check("rabbit://nova:@h", false, "/", HOSTS({"h", 5672, "nova", "guest"}));
        check("rabbit://:pw@h", false, "/", HOSTS({"h", 5672, "guest", "pw"}));
        check("rabbit://@h", false, "/", HOSTS({"h", 5672, "guest", "guest"}));
        /* Percent-decoded. */
        check("rabbit://n%40va:p%3Aw%2Fd%25@h", false, "/", HOSTS({"h", 5672, "n@va", "p:w/d%"}));
        /* The first ':' splits user from password; the last '@' ends them. */
        check("rabbit://u:p:q@h", false, "/", HOSTS({"h", 5672, "u", "p:q"}));
        check("rabbit://u:p@q@h:1", false, "/", HOSTS({"h", 1, "u", "p@q"}));
        /* '+' stays a '+' outside the query. */
        check("rabbit://u+1:p+2@h", false, "/", HOSTS({"h", 5672, "u+1", "p+2"}));
}

static void test_ipv6(void **state) {
        check("rabbit://[::1]:5672/", false, "/", HOSTS({"::1", 5672, "guest", "guest"}));
        check("rabbit://[::1]", false, "/", HOSTS({"::1", 5672, "guest", "guest"}));
        check("rabbit://[::1]:/", false, "/", HOSTS({"::1", 5672, "guest", "guest"}));
        check("amqps://u:p@[fd00::10]:5671,u:p@[fd00::11]/x", true, "x",
              HOSTS({"fd00::10", 5671, "u", "p"}, {"fd00::11", 5671, "u", "p"}));
        check("rabbit://[fe80::1%25eth0]:5672", false, "/",
              HOSTS({"fe80::1%eth0", 5672, "guest", "guest"}));
        check("rabbit://[::ffff:10.0.0.1]:5673,h2", false, "/",
              HOSTS({"::ffff:10.0.0.1", 5673, "guest", "guest"}, {"h2", 5672, "guest", "guest"}));
}

static void test_query(void **state) {
        struct nst_transport_url u;
        struct nst_error err = NST_ERROR_INIT;

        assert_int_equal(nst_transport_url_parse("rabbit://h/v?a=b&c=d&a=e&empty=&flag&+k=%41+b"
                                                 "&amqp_durable_queues=true#frag",
                                                 &u, &err),
                         0);
        assert_string_equal(nst_transport_url_query(&u, "a"), "b,e");
        assert_string_equal(nst_transport_url_query(&u, "c"), "d");
        assert_string_equal(nst_transport_url_query(&u, " k"), "A b");
        assert_string_equal(nst_transport_url_query(&u, "amqp_durable_queues"), "true");
        /* Blank values and bare names are dropped, as parse_qs does. */
        assert_null(nst_transport_url_query(&u, "empty"));
        assert_null(nst_transport_url_query(&u, "flag"));
        assert_null(nst_transport_url_query(&u, "missing"));
        assert_int_equal(u.n_query, 4);
        assert_string_equal(u.query_keys[0], "a");
        assert_string_equal(u.query_keys[1], "c");
        assert_false(u.tls);
        nst_transport_url_done(&u);

        assert_int_equal(nst_transport_url_parse("rabbit://h", &u, &err), 0);
        assert_int_equal(u.n_query, 0);
        assert_null(nst_transport_url_query(&u, "a"));
        nst_transport_url_done(&u);

        /* A query straight after the hosts, no path. */
        assert_int_equal(nst_transport_url_parse("rabbit://h?x=1&&y=2&", &u, &err), 0);
        assert_string_equal(u.vhost, "/");
        assert_string_equal(nst_transport_url_query(&u, "x"), "1");
        assert_string_equal(nst_transport_url_query(&u, "y"), "2");
        assert_int_equal(u.n_query, 2);
        nst_transport_url_done(&u);
}

static void test_ssl_query(void **state) {
        const struct expect_host h[] = {{"h", 5672, "guest", "guest"}};
        check("rabbit://h/?ssl=1", true, "/", 1, h);
        check("rabbit://h/?ssl=true", true, "/", 1, h);
        check("rabbit://h/?ssl=True", true, "/", 1, h);
        check("rabbit://h/?ssl=yes", true, "/", 1, h);
        check("rabbit://h/?ssl=on", true, "/", 1, h);
        check("amqp://h/?ssl=0", false, "/", 1, h);
        check("rabbit://h/?ssl=false", false, "/", 1, h);
        check("rabbit://h/?ssl=", false, "/", 1, h);
        const struct expect_host t[] = {{"h", 5671, "guest", "guest"}};
        check("amqps://h/?ssl=false", true, "/", 1, t);
}

/* Parses text expecting failure; checks the class, code and that the message
 * mentions `needle` and none of the secrets. */
static void check_error(const char *text, const char *needle, const char *secret) {
        struct nst_transport_url u = {.n_hosts = 12345};
        struct nst_error err = NST_ERROR_INIT;
        int r = nst_transport_url_parse(text, &u, &err);
        if (r >= 0)
                fail_msg("%s: accepted", text);
        assert_int_equal(r, -EINVAL);
        assert_int_equal(err.code, -EINVAL);
        assert_string_equal(err.cls, "ConfigError");
        if (!strstr(err.message, needle))
                fail_msg("%s: message '%s' lacks '%s'", text, err.message, needle);
        if (secret && strstr(err.message, secret))
                fail_msg("%s: message '%s' shows the password", text, err.message);
        /* ret untouched on failure */
        assert_int_equal(u.n_hosts, 12345);
}

static void test_errors(void **state) {
        check_error("", "no scheme", NULL);
        check_error("   ", "no scheme", NULL);
        check_error("ctl1:5672", "no scheme", NULL);
        check_error("nova:hunter2@ctl1:5672/", "no scheme", "hunter2");
        check_error("rabbit:ctl1", "no scheme", NULL);
        check_error("rabbit:/ctl1", "no scheme", NULL);
        check_error("://h", "no scheme", NULL);
        check_error("1abc://h", "no scheme", NULL);
        check_error("kafka://h:9092", "unknown scheme 'kafka'", NULL);
        check_error("kombu+memory://", "unknown scheme 'kombu+memory'", NULL);
        check_error("http://u:hunter2@h", "unknown scheme 'http'", "hunter2");

        check_error("rabbit://u:hunter2@h:abc/", "host 1: port", "hunter2");
        check_error("rabbit://u:hunter2@h:0/", "host 1: port", "hunter2");
        check_error("rabbit://u:hunter2@h:65536/", "host 1: port", "hunter2");
        check_error("rabbit://u:hunter2@h:-1/", "host 1: port", "hunter2");
        check_error("rabbit://u:hunter2@h:+1/", "host 1: port", "hunter2");
        check_error("rabbit://u:hunter2@h: 1/", "host 1: port", "hunter2");
        check_error("rabbit://u:hunter2@h:000005672/", "host 1: port", "hunter2");
        check_error("rabbit://h1,u:hunter2@h2:99999/", "host 2: port", "hunter2");
        /* Unbracketed IPv6 cannot be told from host:port. */
        check_error("rabbit://::1/", "host 1", NULL);
        check_error("rabbit://fe80::1:5672/", "host 1: port", NULL);

        check_error("rabbit://u:hunter2@/", "host 1: empty host name", "hunter2");
        check_error("rabbit://u:hunter2@:5672/", "host 1: empty host name", "hunter2");
        check_error("rabbit://h1,:5672", "host 2: empty host name", NULL);
        check_error("rabbit://[]:5672", "host 1: empty host name", NULL);

        check_error("rabbit://u:hunter2@[::1:5672/", "host 1: IPv6", "hunter2");
        check_error("rabbit://[::1]x:5672/", "host 1: only ':port'", NULL);
        check_error("rabbit://[::1]5672/", "host 1: only ':port'", NULL);
        check_error("rabbit://h]:5672/", "host 1: brackets", NULL);
        check_error("rabbit://a[b]/", "host 1: brackets", NULL);

        check_error("rabbit://h/?ssl=maybe", "ssl", NULL);
        check_error("rabbit://h/a\nb", "control character", NULL);
        check_error("rabbit://u:hunter2\x01@h/", "control character", "hunter2");
        check_error("rabbit://u:hunter2%00@h/", "password contains an encoded NUL", "hunter2");
        check_error("rabbit://h/v%00", "virtual host", NULL);
        check_error("rabbit://h/?a=%00", "query parameter value", NULL);
        check_error("rabbit://h%00/", "host name", NULL);
}

/* An unescaped '/', '?' or '#' in a password cuts the netloc inside it. The
 * parse then fails on a "port" made of password characters: the message must
 * not quote it. */
static void test_error_never_quotes_password_fragments(void **state) {
        check_error("rabbit://user:sec/ret@host/", "host 1: port", "sec");
        check_error("rabbit://user:sec?ret@host/", "host 1: port", "sec");
        check_error("rabbit://user:sec#ret@host/", "host 1: port", "sec");
        check_error("rabbit://h1,user:pa/ss@host", "host 2: port", "pa");
}

static void test_errors_use_error_out_optional(void **state) {
        struct nst_transport_url u;
        assert_int_equal(nst_transport_url_parse("nope", &u, NULL), -EINVAL);
        nst_transport_url_done(NULL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_single_host),
                cmocka_unit_test(test_vhosts),
                cmocka_unit_test(test_multiple_hosts),
                cmocka_unit_test(test_credentials),
                cmocka_unit_test(test_ipv6),
                cmocka_unit_test(test_query),
                cmocka_unit_test(test_ssl_query),
                cmocka_unit_test(test_errors),
                cmocka_unit_test(test_error_never_quotes_password_fragments),
                cmocka_unit_test(test_errors_use_error_out_optional),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
