#!/usr/bin/env bash
# cms.superv (issue 13 point 5, docs/cms.md "Supervision and notifications"):
# the event intake and the rules of a real tsmd with cms, driven over HTTP.
#
# - rules: the operator only; a bad rule is 400 naming the field (a
#   parameter the kind does not take, a bound, an unknown kind), nothing
#   stored; PUT replaces, DELETE removes (404 when missing);
# - events: a subscriber, a service provider not named in
#   cms.superv_sources may not post them (403); a bad event is 400 naming
#   the field, a bad NDJSON line names the line, and nothing is evaluated
#   (no window moves: the same events, fixed, then decide exactly once);
# - each rule kind decides on its pattern: velocity, a burst of wrong PINs,
#   impossible travel, a blocklisted merchant (lock), any use of a card
#   reported lost; a replayed event is not counted twice; one decision per
#   card and severity; unknown cards are counted, not refused;
# - a decision starts the rule's action with cause supervision (the card
#   moves; the actions list shows it), and the card's history explains it:
#   the rule and the ids of the events that decided it; GET /decisions;
#   the subscriber is told (a webhook signed with their secret).
#
# usage: superv_test.sh TSMD HOOKSINK [sqlite|pg]   (pg: under tests/pg/with_pg.sh)
set -euo pipefail

TSMD=$1
HOOKSINK=$2
BACKEND=${3:-sqlite}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../tsmd/lib.sh
. "$HERE/../tsmd/lib.sh"
need_tools curl jq
tsmd_work_init cms-superv
W=$TSMD_WORK
SECRET=superv-hook-secret-0123456789
mkdir -p "$W/sink"
"$HOOKSINK" "$W/sink" "$SECRET" 2>>"$W/sink/log" &
TSMD_EXTRA_PIDS+=("$!")
for _ in $(seq 1 200); do
    [ -s "$W/sink/smtp.port" ] && break
    sleep 0.05
done
[ -s "$W/sink/http.port" ] || fail "hooksink did not start"

if [ "$BACKEND" = pg ]; then
    [ -n "${OPENTSM_TEST_PG_URL:-}" ] || fail "OPENTSM_TEST_PG_URL is not set (run under tests/pg/with_pg.sh)"
    DB=$OPENTSM_TEST_PG_URL
else
    DB="sqlite:$W/var/tsmd.db"
fi
# db.pool=1: no request may hold a connection while it waits for another
# one or for the network (it would stall until the pool timeout).
tsmd_config "$DB" "log.level=info" "db.pool=1" "services.enabled=cms" "cms.tick_ms=50" \
    "cms.notify_tick_ms=50" "cms.superv_sources=paysys, other" "cms.superv_card_ttl_ms=0"
tsmd_bootstrap ops
tsmd_start
C=/cms/v1
ALICE=$(tsmd_principal subscriber alice)
TA=$(tsmd_token "$ALICE")
PAYSYS=$(tsmd_principal service_provider paysys)
TP=$(tsmd_token "$PAYSYS")
STRANGER=$(tsmd_principal service_provider stranger)
TS=$(tsmd_token "$STRANGER")
KEYS='{"enc":"404142434445464748494A4B4C4D4E4F","mac":"404142434445464748494A4B4C4D4E4F","dek":"404142434445464748494A4B4C4D4E4F"}'
card() { # ID N
    printf '{"card_id":"%s","pan_token":"pan-%s","subscriber":%s,"cin":"4F54534D4553%04d","mno":"orange","msisdn":"3361000%04d","imsi":"2080100000%04d","imei":"3569380356%04d","issuer":"bank1","aids":["A0000000041010"],"sd_aid":"A000000151000000","kvn":48,"keys":%s}' \
        "$1" "$1" "$ALICE" "$2" "$2" "$2" "$2" "$KEYS"
}
api POST $C/cards "$OP_TOKEN" "{\"cards\":[$(card vel 1),$(card pin 2),$(card trav 3),$(card blk 4),$(card lost 5),$(card calm 6)]}" \
    -H "Idempotency-Key: imp"
expect_status 201 "import"
api PUT "$C/subscribers/$ALICE/notifications" "$TA" \
    "{\"webhook_url\":\"http://127.0.0.1:$(cat "$W/sink/http.port")/hook\",\"webhook_secret\":\"$SECRET\",\"events\":[\"supervision.hit\"]}"
expect_status 200 "alice's webhook"

# --- rules --------------------------------------------------------------------
rule() { # NAME BODY [TOKEN]
    api PUT "$C/rules/$1" "${3:-$OP_TOKEN}" "$2"
}
bad_rule() { # NAME BODY FIELD
    rule "$1" "$2"
    expect_status 400 "rule $1 $2"
    [ "$(jq -r .error.field "$W/resp")" = "$3" ] || fail "rule $2: field $(cat "$W/resp"), want $3"
}
rule r1 '{"kind":"velocity","action":"lock","max":3,"window_s":60}' "$TA"
expect_status 403 "a subscriber's rule"
bad_rule r1 '{"kind":"velocity","action":"lock","max":3}' window_s
bad_rule r1 '{"kind":"velocity","action":"lock","max":0,"window_s":60}' max
bad_rule r1 '{"kind":"velocity","action":"lock","max":3,"window_s":60,"min_s":5}' min_s
bad_rule r1 '{"kind":"teleport","action":"lock"}' kind
bad_rule r1 '{"kind":"blocklist","action":"explode","merchants":["m"]}' action
bad_rule r1 '{"kind":"blocklist","action":"lock","merchants":["ok","bad merchant"]}' 'merchants[1]'
bad_rule 'bad*name' '{"kind":"lost_stolen","action":"destroy"}' name
api GET $C/rules "$OP_TOKEN"
[ "$(jq '.items | length' "$W/resp")" = 0 ] || fail "a refused rule was stored: $(cat "$W/resp")"
rule velocity '{"kind":"velocity","action":"lock","max":3,"window_s":60}'
expect_status 200 "rule velocity"
rule pins '{"kind":"wrong_pin","action":"destroy","max":3,"window_s":300}'
expect_status 200 "rule pins"
rule travel '{"kind":"travel","action":"destroy","min_s":3600}'
expect_status 200 "rule travel"
rule blocked '{"kind":"blocklist","action":"lock","merchants":["m-fence","m-evil"]}'
expect_status 200 "rule blocked"
rule lost '{"kind":"lost_stolen","action":"destroy","enabled":false}'
expect_status 200 "rule lost (off)"
rule lost '{"kind":"lost_stolen","action":"destroy"}'
expect_status 200 "rule lost (replaced)"
rule gone '{"kind":"lost_stolen","action":"lock"}'
expect_status 200 "rule gone"
api DELETE $C/rules/gone "$OP_TOKEN"
expect_status 200 "delete gone"
api DELETE $C/rules/gone "$OP_TOKEN"
expect_status 404 "delete gone again"
api GET $C/rules "$OP_TOKEN"
[ "$(jq -c '[.items[] | [.name, .enabled]]' "$W/resp")" = '[["blocked",true],["lost",true],["pins",true],["travel",true],["velocity",true]]' ] ||
    fail "rules: $(cat "$W/resp")"

# --- events: refusals ---------------------------------------------------------------
T=$(($(date +%s) * 1000))
ev() { # ID CARD AT_OFFSET_S [EXTRA JSON members]
    printf '{"id":"%s","card_id":"%s","at":%d,"amount":1250,"currency":"EUR","merchant":"m-1","location_area":"LA-1"%s}\n' \
        "$1" "$2" $((T + $3 * 1000)) "${4:-}"
}
post1() { # TOKEN BODY
    api POST $C/events "$1" "$2"
}
postn() { # TOKEN FILE
    api POST $C/events/batch "$1" "@$2" -H "Content-Type: application/x-ndjson"
}
post1 "$TA" "$(ev e0 calm 0)"
expect_status 403 "a subscriber's event"
post1 "$TS" "$(ev e0 calm 0)"
expect_status 403 "a service provider that is no payment system (cms.superv_sources)"
postn "$TS" /dev/null
expect_status 403 "a stranger's batch"
post1 "$TP" '{"id":"e0","card_id":"calm","at":1,"amount":-5}'
expect_status 400 "a negative amount"
[ "$(jq -r .error.field "$W/resp")" = amount ] || fail "field: $(cat "$W/resp")"
post1 "$TP" '{"id":"e0","card_id":"calm","pan_token":"pan-calm","at":1}'
expect_status 400 "two card references"
post1 "$TP" '{"id":"e0","card_id":"calm","at":1,"pin":"maybe"}'
expect_status 400 "a bad pin"
[ "$(jq -r .error.field "$W/resp")" = pin ] || fail "field: $(cat "$W/resp")"
post1 "$TP" '{"id":"e0","card_id":"calm","at":1,"colour":"red"}'
expect_status 400 "an unknown member"
# a batch with a bad third line: nothing evaluated
{
    ev v1 vel 0
    ev v2 vel 1
    echo '{"id":"v3","card_id":"vel","at":"soon"}'
    ev v4 vel 3
} >"$W/b1.ndjson"
postn "$TP" "$W/b1.ndjson"
expect_status 400 "a batch with a bad line"
[ "$(jq -r .error.field "$W/resp")" = "lines[3].at" ] || fail "the bad line is not named: $(cat "$W/resp")"

# --- velocity (lock): 4 events within a minute, one replayed ----------------------------
{
    ev v1 vel 0
    ev v2 vel 1
    ev v2 vel 1
    ev v3 vel 2
    echo
    ev x1 nosuchcard 2
    ev v4 vel 3
    ev v5 vel 4
} >"$W/b2.ndjson"
postn "$TP" "$W/b2.ndjson"
expect_status 200 "the velocity batch"
jq -e '.events == 7 and .duplicates == 1 and .unknown_cards == 1' "$W/resp" >/dev/null ||
    fail "counts: $(cat "$W/resp")"
jq -e '.decisions | length == 1 and .[0].card_id == "vel" and .[0].rule == "velocity" and .[0].action == "lock" and .[0].outcome == "awaiting_lock"' \
    "$W/resp" >/dev/null || fail "velocity decision: $(cat "$W/resp")"
api GET $C/cards/vel/history "$TA"
jq -e '[.items[] | select(.cause == "supervision" and .reason == "fraudulent")] | .[0].detail | fromjson? // . | .rule == "velocity" and (.events | sort) == ["v1","v2","v3","v4"]' \
    "$W/resp" >/dev/null || fail "vel's history does not explain: $(cat "$W/resp")"

# --- a burst of wrong PINs (destroy), by PAN token ----------------------------------------
post1 "$TP" '{"id":"p1","pan_token":"pan-pin","at":'$((T))',"pin":"wrong"}'
post1 "$TP" '{"id":"p2","pan_token":"pan-pin","at":'$((T + 60000))',"pin":"ok"}'
post1 "$TP" '{"id":"p3","pan_token":"pan-pin","at":'$((T + 120000))',"pin":"wrong"}'
expect_status 200 "pin 3"
[ "$(jq '.decisions | length' "$W/resp")" = 0 ] || fail "two wrong PINs decided"
post1 "$TP" '{"id":"p4","pan_token":"pan-pin","at":'$((T + 180000))',"pin":"wrong"}'
expect_status 200 "pin 4"
jq -e '.decisions[0].rule == "pins" and .decisions[0].outcome == "awaiting_destroy"' "$W/resp" >/dev/null ||
    fail "wrong PIN decision: $(cat "$W/resp")"

# --- impossible travel (destroy) and a blocklisted merchant (lock), by CIN -----------------
post1 "$TP" "$(ev t1 trav 0)"
post1 "$TP" '{"id":"t2","cin":"4F54534D45530003","at":'$((T + 600000))',"location_area":"LA-99"}'
jq -e '.decisions[0].rule == "travel" and .decisions[0].card_id == "trav"' "$W/resp" >/dev/null ||
    fail "travel decision: $(cat "$W/resp")"
post1 "$TP" "$(ev b1 blk 0 ',"type":"purchase"')"
[ "$(jq '.decisions | length' "$W/resp")" = 0 ] || fail "an ordinary merchant decided"
post1 "$TP" '{"id":"b2","card_id":"blk","at":'$T',"merchant":"m-evil"}'
jq -e '.decisions[0].rule == "blocked" and .decisions[0].action == "lock"' "$W/resp" >/dev/null ||
    fail "blocklist decision: $(cat "$W/resp")"
post1 "$TP" '{"id":"b3","card_id":"blk","at":'$T',"merchant":"m-fence"}'
[ "$(jq '.decisions | length' "$W/resp")" = 0 ] || fail "a second lock decision for one card"

# --- any use of a card reported lost ---------------------------------------------------------
api POST $C/cards/lost/lock "$TA" '{"reason":"lost"}' -H "Idempotency-Key: lost-1"
expect_status 202 "alice reports lost"
# (superv_card_ttl_ms=0: supervision reads the card's state for every event;
# cms.superv_accept runs with the default cache)
post1 "$TP" "$(ev l1 lost 0)"
jq -e '.decisions[0].rule == "lost" and .decisions[0].action == "destroy" and .decisions[0].outcome == "awaiting_destroy"' \
    "$W/resp" >/dev/null || fail "lost card decision: $(cat "$W/resp")"

# --- what stayed calm, decisions, actions, notifications ----------------------------------------
post1 "$TP" "$(ev c1 calm 0)"
[ "$(jq '.decisions | length' "$W/resp")" = 0 ] || fail "calm decided"
api GET "$C/cards/calm" "$TA"
[ "$(jq -r .state "$W/resp")" = active ] || fail "calm moved"
api GET $C/decisions "$OP_TOKEN"
[ "$(jq -c '[.items[] | [.card_id, .rule]]' "$W/resp")" = '[["vel","velocity"],["pin","pins"],["trav","travel"],["blk","blocked"],["lost","lost"]]' ] ||
    fail "decisions: $(cat "$W/resp")"
jq -e '.items[1].why.events == ["p4","p3","p1"]' "$W/resp" >/dev/null || fail "pin's why: $(cat "$W/resp")"
api GET $C/decisions "$TA"
expect_status 403 "a subscriber listing decisions"
api GET $C/cards/pin/actions "$TA"
jq -e '.items[-1].action == "destroy" and .items[-1].cause == "supervision"' "$W/resp" >/dev/null ||
    fail "pin's action: $(cat "$W/resp")"
for _ in $(seq 1 200); do
    [ "$(grep -c 'card.supervision.hit ok' "$W/sink/hooks" 2>/dev/null)" = 5 ] && break
    sleep 0.05
done
[ "$(grep -c 'card.supervision.hit ok' "$W/sink/hooks")" = 5 ] || fail "notifications: $(cat "$W/sink/hooks")"
tsmd_stop
echo "cms.superv: ok"
