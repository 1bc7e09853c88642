#!/usr/bin/env bash
# cms.api (issue 13 points 1, 2, 6, 7 server side, docs/cms.md): a real tsmd
# with cms on SQLite (or PostgreSQL: api_test.sh TSMD pg under
# tests/pg/with_pg.sh), driven over HTTP.
#
# - bulk import by the operator: every card or none (a bad card names its
#   field, an existing card_id is 409), keys never answered; subscribers may
#   not import;
# - a subscriber lists and reads only their own cards; another's is 404;
# - destroy: 202 and awaiting_destroy, history and action rows; a replay with
#   the same Idempotency-Key answers the same action and adds nothing; a
#   second destroy, an unlock of a card awaiting its destroy, a destroy of
#   another's card: each refused, naming the state, nothing changed;
# - lock then unlock moves (awaiting_lock); the reasons each action takes;
# - the operator lists awaiting_destroy cards, sets an issuer policy which
#   the next action takes; alerts list; retry with nothing stalled is 409.
#
# - tsmctl cms: a subscriber's cards, lock, history and a refused unlock
#   (exit status and message), the operator's policy and awaiting list.
#
# usage: api_test.sh TSMD [sqlite|pg] [TSMCTL]
set -euo pipefail

TSMD=$1
BACKEND=${2:-sqlite}
TSMCTL=${3:-}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../tsmd/lib.sh
. "$HERE/../tsmd/lib.sh"

need_tools curl jq
tsmd_work_init cms-api
if [ "$BACKEND" = pg ]; then
    [ -n "${OPENTSM_TEST_PG_URL:-}" ] || fail "OPENTSM_TEST_PG_URL is not set (run under tests/pg/with_pg.sh)"
    DB=$OPENTSM_TEST_PG_URL
else
    DB="sqlite:$TSMD_WORK/var/tsmd.db"
fi
# No mno token: accepted actions wait (nothing is sent); this test is the API.
tsmd_config "$DB" "log.level=warn" "services.enabled=cms" "cms.tick_ms=50"
tsmd_bootstrap ops
tsmd_start

P=/cms/v1
ALICE=$(tsmd_principal subscriber alice)
BOB=$(tsmd_principal subscriber bob)
TA=$(tsmd_token "$ALICE")
TB=$(tsmd_token "$BOB")
KEYS='{"enc":"404142434445464748494A4B4C4D4E4F","mac":"404142434445464748494A4B4C4D4E4F","dek":"404142434445464748494A4B4C4D4E4F"}'

card() { # card ID SUBSCRIBER CIN ISSUER
    printf '{"card_id":"%s","pan_token":"tok-%s","subscriber":%s,"cin":"%s","mno":"orange","msisdn":"3361000%s","imsi":"20801000000%s","imei":"35693803564%s","issuer":"%s","aids":["A0000000041010"],"sd_aid":"A000000151000000","kvn":48,"keys":%s}' \
        "$1" "$1" "$2" "$3" "$4" "$4" "$4" "$5" "$KEYS"
}

count() { # count SQL-ish check through the API: number of items at PATH for TOKEN
    api GET "$1" "$2"
    expect_status 200 "GET $1"
    jq '.items | length' "$TSMD_WORK/resp"
}

# --- import ---------------------------------------------------------------
api POST $P/cards "$TA" "{\"cards\":[$(card a1 "$ALICE" 0101 1001 bank1)]}" -H "Idempotency-Key: imp-x"
expect_status 403 "a subscriber importing cards"
api POST $P/cards "$OP_TOKEN" "{\"cards\":[$(card a1 "$ALICE" 0101 1001 bank1),{\"card_id\":\"bad\"}]}" \
    -H "Idempotency-Key: imp-0"
expect_status 400 "an import with a bad card"
[ "$(jq -r .error.field "$TSMD_WORK/resp")" = "cards[1].subscriber" ] ||
    fail "the bad card's field is not named: $(cat "$TSMD_WORK/resp")"
[ "$(count $P/cards "$OP_TOKEN")" = 0 ] || fail "a failed import left cards"
api POST $P/cards "$OP_TOKEN" "{\"cards\":[$(card a1 "$ALICE" 0101 1001 bank1),$(card a2 "$ALICE" 0102 1002 bank2),$(card b1 "$BOB" 0201 2001 bank1)]}" \
    -H "Idempotency-Key: imp-1"
expect_status 201 "the import"
[ "$(jq -r .imported "$TSMD_WORK/resp")" = 3 ] || fail "import: $(cat "$TSMD_WORK/resp")"
api POST $P/cards "$OP_TOKEN" "{\"cards\":[$(card a1 "$ALICE" 0101 1001 bank1)]}" -H "Idempotency-Key: imp-2"
expect_status 409 "importing an existing card"
[ "$(jq -r .error.field "$TSMD_WORK/resp")" = "cards[0].card_id" ] || fail "409 names no field"
if grep -rqi "404142434445" "$TSMD_WORK/tsmd.log"; then fail "a key reached the log"; fi

# --- reading --------------------------------------------------------------
[ "$(count $P/cards "$TA")" = 2 ] || fail "alice does not see exactly her two cards"
[ "$(count $P/cards "$TB")" = 1 ] || fail "bob does not see exactly his card"
[ "$(count $P/cards "$OP_TOKEN")" = 3 ] || fail "the operator does not see every card"
api GET $P/cards/a1 "$TA"
expect_status 200 "alice reads a1"
[ "$(jq -r .state "$TSMD_WORK/resp")" = active ] || fail "a1 not active"
jq -e 'has("keys") | not' "$TSMD_WORK/resp" >/dev/null || fail "keys answered"
api GET $P/cards/a1 "$TB"
expect_status 404 "bob reads alice's card"
api GET $P/cards/nosuch "$TA"
expect_status 404 "an unknown card"
api GET "$P/cards?state=bogus" "$OP_TOKEN"
expect_status 400 "an unknown state filter"

# --- destroy ----------------------------------------------------------------
api POST $P/cards/a1/destroy "$TB" '{"reason":"stolen"}' -H "Idempotency-Key: d-bob"
expect_status 404 "bob destroying alice's card"
api GET $P/cards/a1 "$TA"
[ "$(jq -r .state "$TSMD_WORK/resp")" = active ] || fail "bob's refused destroy changed a1"
api POST $P/cards/a1/destroy "$TA" '{"reason":"found"}' -H "Idempotency-Key: d-0"
expect_status 400 "a destroy for reason found"
[ "$(jq -r .error.field "$TSMD_WORK/resp")" = reason ] || fail "400 names no reason"
api POST $P/cards/a1/destroy "$TA" '{"reason":"lost","extra":1}' -H "Idempotency-Key: d-00"
expect_status 400 "an unknown member"
api POST $P/cards/a1/destroy "$TA" '{"reason":"lost"}'
expect_status 400 "a destroy without an Idempotency-Key"
api POST $P/cards/a1/destroy "$TA" '{"reason":"lost","note":"left on the train"}' -H "Idempotency-Key: d-1"
expect_status 202 "alice destroys a1"
A1=$(jq -r .action_id "$TSMD_WORK/resp")
[ "$(jq -r .state "$TSMD_WORK/resp")" = awaiting_destroy ] || fail "a1 not awaiting_destroy: $(cat "$TSMD_WORK/resp")"
api POST $P/cards/a1/destroy "$TA" '{"reason":"lost","note":"left on the train"}' -H "Idempotency-Key: d-1"
expect_status 202 "the replayed destroy"
[ "$(jq -r .action_id "$TSMD_WORK/resp")" = "$A1" ] || fail "the replay answered another action"
[ "$(count $P/cards/a1/actions "$TA")" = 1 ] || fail "the replay added an action"
H=$(count $P/cards/a1/history "$TA")
[ "$H" = 1 ] || fail "history has $H rows, want 1"
jq -e '.items[0] | .event == "destroy" and .state == "awaiting_destroy" and .cause == "subscriber"
    and .reason == "lost" and .detail.note == "left on the train"' "$TSMD_WORK/resp" >/dev/null ||
    fail "history row: $(cat "$TSMD_WORK/resp")"
api POST $P/cards/a1/destroy "$TA" '{"reason":"stolen"}' -H "Idempotency-Key: d-2"
expect_status 409 "a second destroy"
[ "$(api_err_code)" = invalid_state ] || fail "409 code: $(cat "$TSMD_WORK/resp")"
jq -r .error.message "$TSMD_WORK/resp" | grep -q awaiting_destroy || fail "409 does not name the state"
api POST $P/cards/a1/unlock "$TA" '{"reason":"found"}' -H "Idempotency-Key: u-1"
expect_status 409 "unlock of a card awaiting its destroy"
jq -r .error.message "$TSMD_WORK/resp" | grep -q awaiting_destroy || fail "409 does not name the state"
[ "$(count $P/cards/a1/actions "$TA")" = 1 ] || fail "a refused request added an action"
[ "$(count $P/cards/a1/history "$TA")" = 1 ] || fail "a refused request added history"
[ "$(count "$P/cards?state=awaiting_destroy" "$OP_TOKEN")" = 1 ] || fail "operator's awaiting_destroy list"

# --- lock, unlock -----------------------------------------------------------
api POST $P/cards/a2/unlock "$TA" '{"reason":"found"}' -H "Idempotency-Key: u-2"
expect_status 409 "unlock of an active card"
api POST $P/cards/a2/lock "$TA" '{"reason":"found"}' -H "Idempotency-Key: l-0"
expect_status 400 "a lock for reason found"
api POST $P/cards/a2/lock "$TA" '{"reason":"lost"}' -H "Idempotency-Key: l-1"
expect_status 202 "alice locks a2"
[ "$(jq -r .state "$TSMD_WORK/resp")" = awaiting_lock ] || fail "a2 not awaiting_lock"

# --- operator ---------------------------------------------------------------
api PUT $P/policies/bank1 "$OP_TOKEN" '{"mode":"hardware"}'
expect_status 200 "policy"
api PUT $P/policies/bank1 "$TA" '{"mode":"hardware"}'
expect_status 403 "a subscriber setting a policy"
api PUT $P/policies/bank1 "$OP_TOKEN" '{"mode":"laser"}'
expect_status 400 "an unknown mode"
api POST $P/cards/b1/destroy "$OP_TOKEN" '{"reason":"fraudulent"}' -H "Idempotency-Key: d-op"
expect_status 202 "the operator destroys b1"
api GET $P/cards/b1/actions "$TB"
jq -e '.items[0] | .mode == "hardware" and .scope == "card" and .cause == "operator"' \
    "$TSMD_WORK/resp" >/dev/null || fail "b1's action: $(cat "$TSMD_WORK/resp")"
api GET $P/alerts "$OP_TOKEN"
expect_status 200 "alerts"
api POST $P/cards/a2/retry "$OP_TOKEN" '{}'
expect_status 409 "a retry with nothing stalled"
api GET $P/alerts "$TA"
expect_status 403 "a subscriber reading alerts"

# audit: the subscriber's destroy is in the host's log
api GET "/admin/v1/audit?action=cms.card.destroy" "$OP_TOKEN"
expect_status 200 "audit list"
[ "$(jq '[.items[] | select(.outcome == "ok")] | length' "$TSMD_WORK/resp")" -ge 2 ] ||
    fail "destroy audit rows: $(cat "$TSMD_WORK/resp")"
# --- tsmctl cms ------------------------------------------------------------
if [ -n "$TSMCTL" ]; then
    ctl() { # TOKEN args...
        local tok=$1
        shift
        OPENTSM_URL=$TSMD_URL OPENTSM_TOKEN=$tok "$TSMCTL" "$@"
    }
    ctl "$TB" cms cards >"$TSMD_WORK/ctl.out" || fail "tsmctl cms cards"
    grep -q '^b1 ' "$TSMD_WORK/ctl.out" || fail "tsmctl cms cards: $(cat "$TSMD_WORK/ctl.out")"
    ! grep -q '^a1 ' "$TSMD_WORK/ctl.out" || fail "bob's tsmctl lists alice's card"
    ctl "$TA" cms card a2 --json | jq -e '.state == "awaiting_lock"' >/dev/null || fail "tsmctl cms card"
    api POST "$P/cards" "$OP_TOKEN" "{\"cards\":[$(card a3 "$ALICE" 0103 1003 bank2)]}" \
        -H "Idempotency-Key: imp-3"
    expect_status 201 "import a3"
    ctl "$TA" cms lock a3 --reason stolen --note "bag snatched" --json >"$TSMD_WORK/ctl.out" ||
        fail "tsmctl cms lock"
    jq -e '.state == "awaiting_lock" and .action == "lock"' "$TSMD_WORK/ctl.out" >/dev/null ||
        fail "tsmctl cms lock: $(cat "$TSMD_WORK/ctl.out")"
    rc=0
    ctl "$TA" cms unlock a1 2>"$TSMD_WORK/ctl.err" || rc=$?
    [ "$rc" != 0 ] || fail "tsmctl cms unlock of a card awaiting its destroy succeeded"
    grep -q awaiting_destroy "$TSMD_WORK/ctl.err" || fail "tsmctl's refusal: $(cat "$TSMD_WORK/ctl.err")"
    rc=0
    ctl "$TA" cms destroy a3 2>/dev/null || rc=$?
    [ "$rc" = 2 ] || fail "tsmctl cms destroy without --reason: exit $rc, want 2"
    ctl "$TA" cms history a3 >"$TSMD_WORK/ctl.out" || fail "tsmctl cms history"
    grep -q 'lock .*awaiting_lock .*subscriber .*stolen' "$TSMD_WORK/ctl.out" ||
        fail "tsmctl cms history: $(cat "$TSMD_WORK/ctl.out")"
    ctl "$OP_TOKEN" cms policy bank2 --mode software --scope app >/dev/null || fail "tsmctl cms policy"
    ctl "$OP_TOKEN" cms policies >"$TSMD_WORK/ctl.out" || fail "tsmctl cms policies"
    grep -q '^bank2 .*software .*app' "$TSMD_WORK/ctl.out" || fail "policies: $(cat "$TSMD_WORK/ctl.out")"
    ctl "$OP_TOKEN" cms cards --state awaiting_destroy --json | jq -e 'length == 2' >/dev/null ||
        fail "tsmctl cms cards --state awaiting_destroy"
fi

tsmd_stop
echo "cms api: ok"
