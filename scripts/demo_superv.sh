#!/usr/bin/env bash
# make demo, the supervision scene (issue 13 point 5, docs/cms.md
# "Supervision and notifications"): a card used illegally is stopped by the
# platform itself. tsmd with cms and mno:orange, alice's phone (se-agent +
# a vse card), 200 other issued cards, and the payment system's stream:
#
#   1. the operator sets the rules; alice asks to be told by e-mail and by a
#      signed webhook (tests/cms/hooksink plays her mail server and her app);
#   2. the payment system streams 20,000 transactions as NDJSON batches:
#      nothing to see;
#   3. alice's card pays in Paris, then, five minutes later, in Tokyo:
#      impossible travel; supervision destroys the card (cause supervision),
#      the card executes the destroy on its own proof (R-MAC), its history
#      names the rule and the two transactions, a payment afterwards fails at
#      the card, and alice is told by e-mail and by a signed webhook.
#
# usage: scripts/demo_superv.sh [BUILD_DIR]   (needs tsmd, tsmctl, se-agent, vse, hooksink)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
HOOKSINK=$BUILD/tests/cms/hooksink
TSMCTL=$BUILD/src/bin/tsmctl
for b in "$BUILD/src/bin/tsmd" "$TSMCTL" "$BUILD/src/bin/se-agent" "$BUILD/src/bin/vse" "$HOOKSINK"; do
    [ -x "$b" ] || { echo "demo: $b is not built (cmake --build $BUILD)" >&2; exit 1; }
done
# shellcheck source=../tests/cms/phones.sh
. "$ROOT/tests/cms/phones.sh"
phones_begin demo-superv "$BUILD/src/bin/tsmd" "$BUILD/src/bin/se-agent" "$BUILD/src/bin/vse" \
    "$ROOT/profiles"
step() { printf '\n== %s\n' "$*"; }
say() { printf '$ %s\n' "$*"; }

step "1. tsmd with cms and mno:orange; alice's phone; the operator's rules"
CIN1=4F54534D45534501
jq '.isd.i = "70"' "$PROFILES/ese-central.json" >"$W/p1.json"
"$VSE" create --profile "$W/p1.json" --out "$W/c1.img" >/dev/null
vse_start 1
SECRET=alice-webhook-secret-$RANDOM$RANDOM
mkdir -p "$W/sink"
"$HOOKSINK" "$W/sink" "$SECRET" 2>>"$W/sink/log" &
TSMD_EXTRA_PIDS+=("$!")
for _ in $(seq 1 200); do
    [ -s "$W/sink/smtp.port" ] && break
    sleep 0.05
done
cms_tsmd_start "cms.superv_sources=paysys" "cms.smtp_url=smtp://127.0.0.1:$(cat "$W/sink/smtp.port")" \
    "cms.smtp_from=cards@bank1.example" "cms.notify_tick_ms=50"
phones_enrol 1
{
    printf '{"cards":[%s' "$(card alice-card $CIN1 1)"
    for k in $(seq 1 200); do
        printf ',{"card_id":"f%04d","subscriber":%s,"cin":"4F54534D4600%04d","mno":"orange","msisdn":"3370000%04d","imsi":"2080199999%04d","imei":"3569380399%04d","issuer":"bank1","aids":["A0000000041010"],"sd_aid":"A000000151000000","kvn":48,"keys":%s}' \
            "$k" "$ALICE" "$k" "$k" "$k" "$k" "$KEYS"
    done
    printf ']}'
} >"$W/cards.json"
api POST "$C/cards" "$OP_TOKEN" "@$W/cards.json" -H "Idempotency-Key: import"
expect_status 201 "import"
agent_start 1
echo "    tsmd: $TSMD_URL; 201 cards issued; alice's phone is on"
ctl() { # TOKEN args...
    local tok=$1
    shift
    OPENTSM_URL=$TSMD_URL OPENTSM_TOKEN=$tok "$TSMCTL" "$@"
}
rule() { # NAME args...
    say "tsmctl cms rule $*"
    ctl "$OP_TOKEN" cms rule "$@" >/dev/null
}
rule velocity --kind velocity --action lock --max 20 --window-s 60
rule pins --kind wrong_pin --action destroy --max 4 --window-s 300
rule travel --kind travel --action destroy --min-s 3600
rule blocked --kind blocklist --action lock --merchants m-evil,m-fence
rule lost --kind lost_stolen --action destroy
say "tsmctl cms rules"
ctl "$OP_TOKEN" cms rules
(umask 077 && echo "$SECRET" >"$W/secret.txt")
say "tsmctl cms notify $ALICE --email alice@mail.example --webhook http://127.0.0.1:$(cat "$W/sink/http.port")/hook --secret-file secret.txt --events supervision.hit,destroyed   (as alice)"
ctl "$TA" cms notify "$ALICE" --email alice@mail.example \
    --webhook "http://127.0.0.1:$(cat "$W/sink/http.port")/hook" --secret-file "$W/secret.txt" \
    --events supervision.hit,destroyed

step "2. the payment system streams 20,000 transactions of the last hours (NDJSON batches)"
PAYSYS=$(tsmd_principal service_provider paysys)
TP=$(tsmd_token "$PAYSYS")
NOW=$(($(date +%s) * 1000))
awk -v n=20000 -v cards=201 -v t0=$((NOW - 20000 * 864 - 7200000)) -v card0=alice-card -v fraud=-1 \
    -f "$ROOT/tests/cms/superv_events.awk" >"$W/stream.ndjson"
split -l 5000 -d -a 2 "$W/stream.ndjson" "$W/batch."
say "POST $C/events/batch   x4 (5,000 lines each)"
for f in "$W"/batch.*; do
    api POST "$C/events/batch" "$TP" "@$f" -H "Content-Type: application/x-ndjson"
    expect_status 200 "batch"
    jq -c '{events, unknown_cards, duplicates, decisions: (.decisions | length)}' "$W/resp" | sed 's/^/    /'
done

step "3. alice's card pays in Paris, then in Tokyo five minutes later"
say "POST $C/events   (Paris, LA-PAR-75)"
api POST "$C/events" "$TP" "{\"id\":\"tx-paris\",\"card_id\":\"alice-card\",\"at\":$((NOW + 60000)),\"amount\":4200,\"currency\":\"EUR\",\"merchant\":\"m-cafe\",\"location_area\":\"LA-PAR-75\"}"
jq -c . "$W/resp" | sed 's/^/    /'
say "POST $C/events   (Tokyo, LA-TYO-13, 5 minutes later)"
api POST "$C/events" "$TP" "{\"id\":\"tx-tokyo\",\"card_id\":\"alice-card\",\"at\":$((NOW + 360000)),\"amount\":98000,\"currency\":\"JPY\",\"merchant\":\"m-electro\",\"location_area\":\"LA-TYO-13\"}"
jq -c . "$W/resp" | sed 's/^/    /'
wait_card alice-card destroyed
say "GET $C/cards/alice-card/history   (as alice)"
api GET "$C/cards/alice-card/history" "$TA"
jq -r '.items[] | "    \(.event)\t\(.state)\t\(.cause // "-")\t\(.reason // "-")\t\(.detail | if type == "object" then (if .rule then "rule \(.rule): events \(.events | join(", "))" elif .proof then "proof: \(.proof)" else tojson end) else "" end)"' "$W/resp"
echo "    the card received $(destroys 1) DESTROY command(s)"
echo "    a payment attempt on alice's card now: SELECT A0000000041010 answers $(pay 1)"
for _ in $(seq 1 200); do
    grep -q 'card.destroyed ok' "$W/sink/hooks" 2>/dev/null && grep -q 'your card is destroyed' "$W/sink/mails" && break
    sleep 0.05
done
echo "    alice's mail server received:"
grep -E '^Subject: ' "$W/sink/mails" | sed 's/^/      /'
echo "    alice's app received (signature checked with her secret):"
awk '{ print "      " $2 " signature " $3 }' "$W/sink/hooks"
say "tsmctl cms decisions   (as the operator)"
ctl "$OP_TOKEN" cms decisions
api GET "$C/cards?state=active&limit=1000" "$OP_TOKEN"
echo "    the other cards: $(jq '.items | length' "$W/resp") of 200 still active"
stop_agents
tsmd_stop
echo "    tsmd stopped cleanly"
echo
echo "demo: supervision done"
