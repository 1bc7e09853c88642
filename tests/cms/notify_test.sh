#!/usr/bin/env bash
# cms.notify (issue 13 point 6, docs/cms.md "Supervision and notifications"):
# a real tsmd with cms and a real receiver (tests/cms/hooksink: an HTTP
# server that checks the HMAC-SHA-256 signature, and an SMTP sink).
#
# - settings: another subscriber's are 404; a webhook without a secret, a
#   bad URL, an unknown event: 400 naming the field, nothing stored; the
#   secret is never answered, logged or stored in the clear;
# - a destroy request notifies its subscriber by a signed webhook and by an
#   e-mail through libcurl's SMTP; a subscriber who asked only for
#   "destroyed" gets nothing for a lock;
# - crash: the receiver is down when a lock is accepted, tsmd is killed with
#   SIGKILL, the receiver and tsmd come back: the notification arrives
#   (the outbox row was in the lock's transaction), with the same delivery id
#   as the attempts that failed;
# - alice reads her deliveries (state, attempts), bob may not (404).
#
# usage: notify_test.sh TSMD HOOKSINK
set -euo pipefail

TSMD=$1
HOOKSINK=$2
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../tsmd/lib.sh
. "$HERE/../tsmd/lib.sh"

need_tools curl jq sqlite3
tsmd_work_init cms-notify
SECRET="hook-secret-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
SINK="$TSMD_WORK/sink"
mkdir -p "$SINK"

sink_start() { # sink_start [HTTP_PORT SMTP_PORT]
    rm -f "$SINK/http.port" "$SINK/smtp.port"
    "$HOOKSINK" "$SINK" "$SECRET" "$@" 2>>"$SINK/log" &
    SINK_PID=$!
    TSMD_EXTRA_PIDS+=("$SINK_PID")
    for _ in $(seq 1 200); do
        [ -s "$SINK/smtp.port" ] && break
        kill -0 "$SINK_PID" 2>/dev/null || fail "hooksink died: $(cat "$SINK/log")"
        sleep 0.05
    done
    [ -s "$SINK/smtp.port" ] || fail "hooksink did not start"
    HTTP_PORT=$(cat "$SINK/http.port")
    SMTP_PORT=$(cat "$SINK/smtp.port")
}

# wait_for FILE PATTERN WHAT: until grep finds it (the outcome, not a time)
wait_for() {
    for _ in $(seq 1 400); do
        if [ -f "$1" ] && grep -qE "$2" "$1"; then return 0; fi
        sleep 0.05
    done
    fail "$3: no '$2' in $1: $(tail -c 600 "$1" 2>/dev/null)"
}

sink_start
DBF="$TSMD_WORK/var/tsmd.db"
tsmd_config "sqlite:$DBF" "log.level=info" "services.enabled=cms" "cms.tick_ms=50" \
    "cms.smtp_url=smtp://127.0.0.1:$SMTP_PORT" "cms.smtp_from=cms@bank.test" \
    "cms.notify_backoff_ms=100" "cms.notify_tick_ms=50"
tsmd_bootstrap ops
tsmd_start

P=/cms/v1
ALICE=$(tsmd_principal subscriber alice)
BOB=$(tsmd_principal subscriber bob)
TA=$(tsmd_token "$ALICE")
TB=$(tsmd_token "$BOB")
KEYS='{"enc":"404142434445464748494A4B4C4D4E4F","mac":"404142434445464748494A4B4C4D4E4F","dek":"404142434445464748494A4B4C4D4E4F"}'
card() { # card ID SUBSCRIBER CIN N
    printf '{"card_id":"%s","subscriber":%s,"cin":"%s","mno":"orange","msisdn":"3361000%s","imsi":"20801000000%s","imei":"35693803564%s","issuer":"bank1","aids":["A0000000041010"],"sd_aid":"A000000151000000","kvn":48,"keys":%s}' \
        "$1" "$2" "$3" "$4" "$4" "$4" "$KEYS"
}
api POST $P/cards "$OP_TOKEN" "{\"cards\":[$(card a1 "$ALICE" 0101 1001),$(card a2 "$ALICE" 0102 1002),$(card b1 "$BOB" 0201 2001)]}" \
    -H "Idempotency-Key: imp-1"
expect_status 201 "the import"

# --- settings ---------------------------------------------------------------
HOOK="http://127.0.0.1:$HTTP_PORT/hook"
api GET "$P/subscribers/$ALICE/notifications" "$TB"
expect_status 404 "bob reading alice's settings"
api PUT "$P/subscribers/$ALICE/notifications" "$TB" "{\"email\":\"bob@evil.test\"}"
expect_status 404 "bob writing alice's settings"
api PUT "$P/subscribers/$ALICE/notifications" "$TA" "{\"webhook_url\":\"$HOOK\"}"
expect_status 400 "a webhook without a secret"
[ "$(jq -r .error.field "$TSMD_WORK/resp")" = webhook_secret ] || fail "400 names no secret: $(cat "$TSMD_WORK/resp")"
api PUT "$P/subscribers/$ALICE/notifications" "$TA" "{\"webhook_url\":\"ftp://x/y\",\"webhook_secret\":\"$SECRET\"}"
expect_status 400 "an ftp webhook"
[ "$(jq -r .error.field "$TSMD_WORK/resp")" = webhook_url ] || fail "400 names no url"
api PUT "$P/subscribers/$ALICE/notifications" "$TA" "{\"email\":\"alice@bank.test\",\"events\":[\"destroyed\",\"exploded\"]}"
expect_status 400 "an unknown event"
[ "$(jq -r .error.field "$TSMD_WORK/resp")" = "events[1]" ] || fail "400 names no event"
api PUT "$P/subscribers/$ALICE/notifications" "$TA" "{\"webhook_url\":\"$HOOK\",\"webhook_secret\":\"short\"}"
expect_status 400 "a short secret"
api GET "$P/subscribers/$ALICE/notifications" "$TA"
expect_status 200 "alice's empty settings"
[ "$(jq -c '[.webhook_url, .email, .webhook_secret_set]' "$TSMD_WORK/resp")" = '[null,null,false]' ] ||
    fail "refused settings were stored: $(cat "$TSMD_WORK/resp")"
api PUT "$P/subscribers/$ALICE/notifications" "$TA" \
    "{\"webhook_url\":\"$HOOK\",\"webhook_secret\":\"$SECRET\",\"email\":\"alice@bank.test\"}"
expect_status 200 "alice's settings"
grep -q "$SECRET" "$TSMD_WORK/resp" && fail "the secret was answered"
[ "$(jq -r .webhook_secret_set "$TSMD_WORK/resp")" = true ] || fail "no secret set: $(cat "$TSMD_WORK/resp")"
api PUT "$P/subscribers/$BOB/notifications" "$TB" "{\"email\":\"bob@bank.test\",\"events\":[\"destroyed\"]}"
expect_status 200 "bob's settings"
[ "$(jq -c .events "$TSMD_WORK/resp")" = '["destroyed"]' ] || fail "bob's events: $(cat "$TSMD_WORK/resp")"

# --- a destroy notifies by webhook and e-mail ------------------------------
api POST "$P/cards/a1/destroy" "$TA" '{"reason":"lost"}' -H "Idempotency-Key: $(idem)"
expect_status 202 "alice's destroy"
wait_for "$SINK/hooks" '^[0-9]+ card\.destroy\.accepted ok \{"event":"card\.destroy\.accepted","card_id":"a1"' \
    "the signed webhook"
wait_for "$SINK/mails" 'Subject: Card a1: the destruction of your card was requested' "the e-mail"
grep -q 'RCPT TO:<alice@bank.test>' "$SINK/mails" || fail "the mail went elsewhere"
grep -q 'MAIL FROM:<cms@bank.test>' "$SINK/mails" || fail "the mail's sender"
grep -q ' bad ' "$SINK/hooks" && fail "a webhook with a bad signature"
# bob asked for "destroyed" only: a lock writes nothing for him
api POST "$P/cards/b1/lock" "$TB" '{"reason":"lost"}' -H "Idempotency-Key: $(idem)"
expect_status 202 "bob's lock"
[ "$(sqlite3 "$DBF" "SELECT COUNT(*) FROM svc_outbox WHERE target = 'bob@bank.test'")" = 0 ] ||
    fail "bob was told of an event he did not ask for"

# --- nothing lost by a crash ------------------------------------------------
kill "$SINK_PID"
wait "$SINK_PID" 2>/dev/null || true
api POST "$P/cards/a2/lock" "$TA" '{"reason":"stolen"}' -H "Idempotency-Key: $(idem)"
expect_status 202 "alice's lock with the receiver down"
ID=$(sqlite3 "$DBF" "SELECT id FROM svc_outbox WHERE channel = 'webhook' AND event = 'card.lock.accepted'")
[ -n "$ID" ] || fail "no outbox row for the lock"
for _ in $(seq 1 200); do
    [ "$(sqlite3 "$DBF" "SELECT COUNT(*) FROM svc_outbox_log WHERE msg = $ID")" -ge 1 ] && break
    sleep 0.05
done
[ "$(sqlite3 "$DBF" "SELECT state FROM svc_outbox WHERE id = $ID")" = pending ] || fail "the row is not pending"
tsmd_kill9
sink_start "$HTTP_PORT" "$SMTP_PORT"
tsmd_start
wait_for "$SINK/hooks" "^$ID card\\.lock\\.accepted ok .*\"card_id\":\"a2\"" "the webhook after the crash"
wait_for "$SINK/mails" 'Subject: Card a2: a lock of your card was requested' "the e-mail after the crash"
[ "$(sqlite3 "$DBF" "SELECT state FROM svc_outbox WHERE id = $ID")" = delivered ] || fail "not delivered"
N=$(sqlite3 "$DBF" "SELECT COUNT(*) FROM svc_outbox_log WHERE msg = $ID AND status = 204")
[ "$N" = 1 ] || fail "delivery log: $N successful attempts"

# --- the deliveries, as alice reads them ---------------------------------------------
api GET "$P/subscribers/$ALICE/notifications/deliveries" "$TB"
expect_status 404 "bob reading alice's deliveries"
api GET "$P/subscribers/$ALICE/notifications/deliveries?limit=100" "$TA"
expect_status 200 "alice's deliveries"
jq -e '[.items[] | select(.event == "card.destroy.accepted" and .state == "delivered")] | map(.channel) | sort == ["email","webhook"]' \
    "$TSMD_WORK/resp" >/dev/null || fail "alice's deliveries: $(cat "$TSMD_WORK/resp")"
jq -e --arg id "$ID" '.items[] | select(.id == $id) | .state == "delivered" and .attempts >= 2' \
    "$TSMD_WORK/resp" >/dev/null || fail "the lock's webhook: $(cat "$TSMD_WORK/resp")"
jq -e '[.items[] | select(.target == "bob@bank.test")] | length == 0' "$TSMD_WORK/resp" >/dev/null ||
    fail "bob's mail in alice's deliveries"

# --- the secret stays secret -------------------------------------------------
grep -q "$SECRET" "$TSMD_WORK/tsmd.log" && fail "the secret reached the log"
grep -aq "$SECRET" "$DBF" && fail "the secret is in the database in the clear"
tsmd_stop
echo "cms.notify: ok"
