#!/usr/bin/env bash
# cms.superv_accept (issue 13 acceptance, supervision): a stream of 100,000
# payment events over 1,000 cards, posted as NDJSON batches by the payment
# system, with one fraudulent pattern hidden in it (a burst of four wrong
# PINs on card c1 within a minute, tests/cms/superv_events.awk), destroys
# exactly that card: c1 is on a phone (se-agent + vse), supervision's
# decision starts the destroy with cause supervision, the driver carries it
# to the card inside SCP03 and cms records destroyed on the card's R-MAC;
# the card received exactly one DESTROY; every other card stays active; the
# one decision and c1's history name the rule and the four events.
#
# usage: superv_accept_test.sh TSMD SE_AGENT VSE PROFILES_DIR
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=phones.sh
. "$HERE/phones.sh"
phones_begin cms-superv-accept "$@"
for t in awk split; do
    command -v "$t" >/dev/null || fail "$t is missing (scripts/deps.sh installs it)"
done

CIN1=4F54534D45534501
jq '.isd.i = "70"' "$PROFILES/ese-central.json" >"$W/p1.json"
"$VSE" create --profile "$W/p1.json" --out "$W/c1.img" >/dev/null
vse_start 1
cms_tsmd_start "cms.superv_sources=paysys"
phones_enrol 1

# --- 1,000 cards: c1 on the phone, 999 others ------------------------------------
{
    printf '{"cards":[%s' "$(card c1 $CIN1 1)"
    for k in $(seq 1 999); do
        printf ',{"card_id":"f%04d","subscriber":%s,"cin":"4F54534D4600%04d","mno":"orange","msisdn":"3370000%04d","imsi":"2080199999%04d","imei":"3569380399%04d","issuer":"bank1","aids":["A0000000041010"],"sd_aid":"A000000151000000","kvn":48,"keys":%s}' \
            "$k" "$ALICE" "$k" "$k" "$k" "$k" "$KEYS"
    done
    printf ']}'
} >"$W/cards.json"
api POST $C/cards "$OP_TOKEN" "@$W/cards.json" -H "Idempotency-Key: import"
expect_status 201 "import"
[ "$(jq -r .imported "$W/resp")" = 1000 ] || fail "import: $(cat "$W/resp")"
agent_start 1

# --- the rules ------------------------------------------------------------------------
rule() { # NAME BODY
    api PUT "$C/rules/$1" "$OP_TOKEN" "$2"
    expect_status 200 "rule $1"
}
rule velocity '{"kind":"velocity","action":"lock","max":20,"window_s":60}'
rule pins '{"kind":"wrong_pin","action":"destroy","max":4,"window_s":300}'
rule travel '{"kind":"travel","action":"destroy","min_s":600}'
rule blocked '{"kind":"blocklist","action":"lock","merchants":["m-evil","m-fence"]}'
rule lost '{"kind":"lost_stolen","action":"destroy"}'

# --- the stream: 100,000 events in 20 batches -------------------------------------------
PAYSYS=$(tsmd_principal service_provider paysys)
TP=$(tsmd_token "$PAYSYS")
T0=$((($(date +%s) - 90000) * 1000))
awk -v n=100000 -v cards=1000 -v t0="$T0" -v card0=c1 -v fraud=50000 \
    -f "$HERE/superv_events.awk" >"$W/events.ndjson"
[ "$(wc -l <"$W/events.ndjson")" = 100000 ] || fail "the stream is not 100,000 events"
split -l 5000 -d -a 2 "$W/events.ndjson" "$W/batch."
total=0
decisions=0
for f in "$W"/batch.*; do
    api POST $C/events/batch "$TP" "@$f" -H "Content-Type: application/x-ndjson"
    expect_status 200 "batch $f"
    total=$((total + $(jq .events "$W/resp")))
    decisions=$((decisions + $(jq '.decisions | length' "$W/resp")))
    [ "$(jq '.unknown_cards + .duplicates' "$W/resp")" = 0 ] || fail "batch $f: $(head -c 300 "$W/resp")"
done
[ "$total" = 100000 ] || fail "events taken: $total"
[ "$decisions" = 1 ] || fail "decisions: $decisions"

# --- exactly that card, destroyed on its own proof ------------------------------------------
wait_card c1 destroyed
[ "$(destroys 1)" = 1 ] || fail "card 1 received $(destroys 1) DESTROY commands"
api GET "$C/cards?state=active&limit=1000" "$OP_TOKEN"
expect_status 200 "active cards"
[ "$(jq '.items | length' "$W/resp")" = 999 ] || fail "active cards: $(jq '.items | length' "$W/resp")"
jq -e '[.items[] | .card_id | startswith("f")] | all' "$W/resp" >/dev/null || fail "c1 is still active"
api GET $C/decisions "$OP_TOKEN"
jq -e '.items | length == 1 and .[0].card_id == "c1" and .[0].rule == "pins" and .[0].action == "destroy" and (.[0].why.events | sort) == ["x1","x2","x3","x4"]' \
    "$W/resp" >/dev/null || fail "decisions: $(cat "$W/resp")"
api GET $C/cards/c1/history "$TA"
jq -e '[.items[] | select(.cause == "supervision" and .event == "destroy")] | length == 1' "$W/resp" >/dev/null ||
    fail "c1's history has no supervision destroy: $(cat "$W/resp")"
jq -e '[.items[] | select(.state == "destroyed")] | length >= 1' "$W/resp" >/dev/null ||
    fail "c1's history does not end destroyed"
api GET $C/cards/c1/actions "$TA"
jq -e '[.items[] | select(.action == "destroy")] | length == 1 and .[0].cause == "supervision" and .[0].reason == "fraudulent"' \
    "$W/resp" >/dev/null || fail "c1's actions: $(cat "$W/resp")"
stop_agents
tsmd_stop
echo "cms.superv_accept: ok (100000 events, 1 decision, c1 destroyed, 999 cards active)"
