#!/usr/bin/env bash
# tsmd.services (issue 8 points 1-3, acceptance): the host knows no service
# by name; services.enabled picks services and named instances.
#
# - startup errors, each precise, exit 2: an unknown service, an instance of
#   a service without instances, a malformed instance name, the same
#   instance twice, an empty entry, a section or --set option of an
#   instance or service that is not enabled;
# - tsm with two instances of the test fixture service (testsvc:a,
#   testsvc:b): each is served under its own prefix with its own config
#   section ([testsvc.a] max_items=2 vs [testsvc.b] max_items=5) and its
#   own state (an item written under /testsvc/a/v1 is absent under
#   /testsvc/b/v1; the same name holds another value there); the default
#   prefix /testsvc/v1 is not served; another SP's item answers 404;
# - services.enabled="" serves /admin/v1 alone (no /tsm/v1);
# - --print-config-doc documents every service's options.
#
# usage: services_test.sh TSMD
set -euo pipefail

TSMD=$1
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

for t in curl jq; do
    command -v "$t" >/dev/null || fail "$t is missing (scripts/deps.sh installs it)"
done
tsmd_work_init tsmd-services
tsmd_config "sqlite:$TSMD_WORK/var/tsmd.db" "log.level=warn"

# startup_err EXPECTED_TEXT [tsmd args...]: --check-config must exit 2 and
# say EXPECTED_TEXT on stderr.
startup_err() {
    local want=$1 rc=0
    shift
    (cd "$TSMD_WORK" && "$TSMD" --config "$TSMD_WORK/tsmd.ini" "$@" --check-config \
        >"$TSMD_WORK/out" 2>"$TSMD_WORK/err") || rc=$?
    [ "$rc" = 2 ] || fail "tsmd $* exited $rc, expected 2: $(cat "$TSMD_WORK/err")"
    grep -qF -- "$want" "$TSMD_WORK/err" ||
        fail "tsmd $*: expected \"$want\", got: $(cat "$TSMD_WORK/err")"
}

startup_err 'unknown service "nope" (known: tsm, testsvc, mno, pay, cms)' --set 'services.enabled=tsm, nope:orange'
startup_err '"tsm:x": service tsm has no named instances' --set 'services.enabled=tsm:x'
startup_err '"testsvc:Bad": an instance is written testsvc:NAME' --set 'services.enabled=testsvc:Bad'
startup_err '"testsvc:a:b": an instance is written testsvc:NAME' --set 'services.enabled=testsvc:a:b'
startup_err '"testsvc:a" is listed twice' --set 'services.enabled=testsvc:a, tsm, testsvc:a'
startup_err '"tsm" is listed twice' --set 'services.enabled=tsm,tsm'
startup_err 'an empty entry' --set 'services.enabled=tsm,,testsvc:a'
startup_err '[testsvc.b] configures the instance testsvc:b, which services.enabled does not list' \
    --set 'services.enabled=tsm, testsvc:a' --set testsvc.b.max_items=3
startup_err '[tsm] configures the service tsm, which services.enabled does not list' \
    --set 'services.enabled=testsvc:a' --set tsm.cache_mb=1
# The same from the file: a section of an instance that is not enabled.
cp "$TSMD_WORK/tsmd.ini" "$TSMD_WORK/base.ini"
printf '[services]\nenabled = tsm, testsvc:a\n[testsvc.c]\nmax_items = 3\n' >>"$TSMD_WORK/tsmd.ini"
startup_err '[testsvc.c] configures the instance testsvc:c, which services.enabled does not list'
cp "$TSMD_WORK/base.ini" "$TSMD_WORK/tsmd.ini"
# An unknown key of an enabled instance is the option table's error.
startup_err 'testsvc.a.nope' --set 'services.enabled=testsvc:a' --set testsvc.a.nope=1

startup_err 'http.metrics: expected operator, public or off' --set http.metrics=everyone
# The documentation covers every service's options and the instance rules.
"$TSMD" --print-config-doc >"$TSMD_WORK/doc.md"
for k in tsm.import_batch tsm.cache_mb testsvc.max_items services.enabled '[testsvc.a]'; do
    grep -qF -- "$k" "$TSMD_WORK/doc.md" || fail "--print-config-doc lacks $k"
done

# ---- tsm + testsvc:a + testsvc:b over HTTP ----
printf '[services]\nenabled = tsm, testsvc:a, testsvc:b\n[testsvc.a]\nmax_items = 2\n[testsvc.b]\nmax_items = 5\n' \
    >>"$TSMD_WORK/tsmd.ini"
"$TSMD" --config "$TSMD_WORK/tsmd.ini" --print-routes >"$TSMD_WORK/routes"
for r in "POST /testsvc/a/v1/items" "POST /testsvc/b/v1/items" "GET /tsm/v1/secure-elements" \
    "GET /admin/v1/principals"; do
    grep -qxF "$r" "$TSMD_WORK/routes" || fail "--print-routes lacks $r"
done
grep -q "^POST /testsvc/v1/" "$TSMD_WORK/routes" && fail "the default testsvc instance is served"
tsmd_bootstrap svc-op
tsmd_start
SPA=$(tsmd_principal service_provider sp-a)
SPB=$(tsmd_principal service_provider sp-b)
TA=$(tsmd_token "$SPA")
TB=$(tsmd_token "$SPB")

put() { # put INSTANCE TOKEN NAME VALUE KEY
    api POST "/testsvc/$1/v1/items" "$2" "{\"name\":\"$3\",\"value\":\"$4\"}" -H "Idempotency-Key: $5"
}
put a "$TA" color red k1
[ "$API_STATUS" = 201 ] || fail "put a/color: $API_STATUS $(cat "$TSMD_WORK/resp")"
api GET /testsvc/a/v1/items/color "$TA"
[ "$API_STATUS" = 200 ] && [ "$(jq -r .value "$TSMD_WORK/resp")" = red ] || fail "a/color not read back"
api GET /testsvc/b/v1/items/color "$TA"
[ "$API_STATUS" = 404 ] || fail "b sees a's item: $API_STATUS"
put b "$TA" color blue k2
[ "$API_STATUS" = 201 ] || fail "put b/color: $API_STATUS $(cat "$TSMD_WORK/resp")"
api GET /testsvc/a/v1/items/color "$TA"
[ "$(jq -r .value "$TSMD_WORK/resp")" = red ] || fail "b's write changed a's item"
api GET /testsvc/b/v1/items/color "$TA"
[ "$(jq -r .value "$TSMD_WORK/resp")" = blue ] || fail "b/color not blue"
api GET /testsvc/v1/items/color "$TA"
[ "$API_STATUS" = 404 ] || fail "the default prefix answers: $API_STATUS"
# Another SP's item is not there for it (the kit's one ownership check).
api GET /testsvc/a/v1/items/color "$TB"
[ "$API_STATUS" = 404 ] || fail "sp-b reads sp-a's item: $API_STATUS"
# Config per instance: a holds 2 items, b 5.
put a "$TA" x1 v k3
put a "$TA" x2 v k4
[ "$API_STATUS" = 409 ] || fail "a took a third item (max_items=2): $API_STATUS"
for i in 1 2 3; do
    put b "$TA" "y$i" v "kb$i"
    [ "$API_STATUS" = 201 ] || fail "b refused item $i (max_items=5): $API_STATUS"
done
api GET /testsvc/a/v1/items "$OP_TOKEN"
[ "$(jq '.items | length' "$TSMD_WORK/resp")" = 2 ] || fail "a lists $(cat "$TSMD_WORK/resp")"
api GET /testsvc/b/v1/items "$OP_TOKEN"
[ "$(jq '.items | length' "$TSMD_WORK/resp")" = 4 ] || fail "b lists $(cat "$TSMD_WORK/resp")"
# A route its service audits at a coarser level (SVC_R_COARSE_AUDIT) gets
# no per-request audit row for a success; the same change on an ordinary
# route gets its row (the service's, in its transaction: the host writes no
# second one for the request's success), and a failure gets the host's.
api POST /testsvc/a/v1/events "$TA" '{"name":"e1"}' -H "X-Request-Id: ev-fine"
[ "$API_STATUS" = 201 ] || fail "POST events: $API_STATUS"
api POST /testsvc/a/v1/events-coarse "$TA" '{"name":"e2"}' -H "X-Request-Id: ev-coarse"
[ "$API_STATUS" = 201 ] || fail "POST events-coarse: $API_STATUS"
api POST /testsvc/a/v1/events-coarse "$TA" '{"nam":"e2"}' -H "X-Request-Id: ev-coarse-bad"
[ "$API_STATUS" = 400 ] || fail "POST events-coarse with a bad body: $API_STATUS"
audit_rows() { # audit_rows REQUEST_ID: rows of that request (the id may be namespaced)
    api GET "/admin/v1/audit?limit=1000" "$OP_TOKEN"
    jq --arg r "$1" '[.items[] | select(.request_id | endswith($r))] | length' "$TSMD_WORK/resp"
}
[ "$(audit_rows ev-fine)" = 1 ] || fail "an audited event has $(audit_rows ev-fine) rows, want 1"
[ "$(jq -r '[.items[] | select(.request_id | endswith("ev-fine")) | .action] | join(",")' \
    "$TSMD_WORK/resp")" = testsvc.event ] || fail "the audited event's row is not the service's"
[ "$(audit_rows ev-coarse)" = 0 ] || fail "a coarse-audited event has per-request rows"
[ "$(audit_rows ev-coarse-bad)" = 1 ] || fail "a refused coarse-audited request is not audited"
# http.metrics (default operator): no credentials, no metrics.
api GET /metrics -
[ "$API_STATUS" = 401 ] || fail "/metrics without credentials: $API_STATUS"
api GET /metrics "$OP_TOKEN"
[ "$API_STATUS" = 200 ] || fail "/metrics as operator: $API_STATUS"
tsmd_stop

# ---- no service: the administration API alone ----
tsmd_config "sqlite:$TSMD_WORK/var/tsmd2.db" "log.level=warn" "services.enabled=" \
    "http.metrics=off" "http.max_conns_per_ip=8" "http.sse_heartbeat_s=5" "http.stream_buf_kib=16" \
    "http.trusted_proxies=10.0.0.1"
tsmd_bootstrap solo-op
tsmd_start
api GET /admin/v1/principals "$OP_TOKEN"
[ "$API_STATUS" = 200 ] || fail "/admin/v1/principals without services: $API_STATUS"
api GET /admin/v1/audit/verify "$OP_TOKEN"
[ "$API_STATUS" = 200 ] || fail "/admin/v1/audit/verify without services: $API_STATUS"
api GET /tsm/v1/secure-elements "$OP_TOKEN"
[ "$API_STATUS" = 404 ] || fail "/tsm/v1 served with no service enabled: $API_STATUS"
api GET /metrics "$OP_TOKEN"
[ "$API_STATUS" = 404 ] || fail "/metrics with http.metrics=off: $API_STATUS"

# ---- a port taken between the probe and the bind: tsmd_start moves on ----
# (issue 8 acceptance: a test recovers instead of waiting for a server that
# cannot come). A third tsmd is configured on the running one's port.
FIRST_PID=$TSMD_PID
FIRST_PORT=$TSMD_PORT
TSMD_EXTRA_PIDS+=("$FIRST_PID")
tsmd_config "sqlite:$TSMD_WORK/var/tsmd3.db" "log.level=warn" "services.enabled="
sed -i "s/^listen = .*/listen = 127.0.0.1:$FIRST_PORT/" "$TSMD_WORK/tsmd.ini"
TSMD_PORT=$FIRST_PORT
TSMD_URL="http://127.0.0.1:$TSMD_PORT"
tsmd_bootstrap third-op
tsmd_start
[ "$TSMD_PORT" != "$FIRST_PORT" ] || fail "tsmd_start kept the taken port"
grep -q "listen = 127.0.0.1:$TSMD_PORT" "$TSMD_WORK/tsmd.ini" || fail "the config was not moved"
api GET /admin/v1/principals "$OP_TOKEN"
[ "$API_STATUS" = 200 ] || fail "the moved tsmd does not answer: $API_STATUS"
tsmd_stop
TSMD_PID=$FIRST_PID
tsmd_stop
echo "tsmd.services: ok"
