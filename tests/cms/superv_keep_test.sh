#!/usr/bin/env bash
# cms.superv_keep (docs/cms.md "Supervision and notifications"): the memory
# supervision holds stays bounded by the cards that are active. Cards and
# event references without an event for cms.superv_keep_s are dropped as
# events come in (metrics cms_superv_cards, cms_superv_refs), unless a rule's
# window is longer: then they are kept as long as that window, and the
# window still decides.
#
# usage: superv_keep_test.sh TSMD
set -euo pipefail

TSMD=$1
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../tsmd/lib.sh
. "$HERE/../tsmd/lib.sh"
need_tools curl jq
tsmd_work_init cms-superv-keep
W=$TSMD_WORK
tsmd_config "sqlite:$W/var/tsmd.db" "log.level=info" "services.enabled=cms" \
    "cms.superv_keep_s=1" "cms.superv_card_ttl_ms=0"
tsmd_bootstrap ops
tsmd_start
C=/cms/v1
ALICE=$(tsmd_principal subscriber alice)
KEYS='{"enc":"404142434445464748494A4B4C4D4E4F","mac":"404142434445464748494A4B4C4D4E4F","dek":"404142434445464748494A4B4C4D4E4F"}'
card() { # ID N
    printf '{"card_id":"%s","pan_token":"pan-%s","subscriber":%s,"cin":"4F54534D4553%04d","mno":"orange","msisdn":"3361000%04d","imsi":"2080100000%04d","imei":"3569380356%04d","issuer":"bank1","aids":["A0000000041010"],"sd_aid":"A000000151000000","kvn":48,"keys":%s}' \
        "$1" "$1" "$ALICE" "$2" "$2" "$2" "$2" "$KEYS"
}
api POST $C/cards "$OP_TOKEN" "{\"cards\":[$(card ka 1),$(card kb 2),$(card kc 3)]}" \
    -H "Idempotency-Key: imp"
expect_status 201 "import"
T=$(($(date +%s) * 1000))
N=0
ev() { # CARD: one event now
    N=$((N + 1))
    api POST $C/events "$OP_TOKEN" \
        "$(printf '{"id":"k%d","card_id":"%s","at":%d,"amount":100,"currency":"EUR","merchant":"m-1","location_area":"LA-1"}' \
            "$N" "$1" $((T + N)))"
    expect_status 200 "event $N for $1"
}
gauges() { # -> "cards refs"
    curl -s "$TSMD_URL/metrics" -H "Authorization: Bearer $OP_TOKEN" >"$W/metrics"
    echo "$(sed -n 's/^cms_superv_cards //p' "$W/metrics") $(sed -n 's/^cms_superv_refs //p' "$W/metrics")"
}

# 1. no rule: idle cards and references go after a second
ev ka
ev kb
ev nobody # an unknown reference is remembered too
[ "$(gauges)" = "2 3" ] || fail "after three events: cards refs = $(gauges)"
sleep 2.2
ev ka # an idle card comes back: dropped, then read again
[ "$(gauges)" = "1 1" ] || fail "idle ones not dropped: cards refs = $(gauges)"
ev kc
[ "$(gauges)" = "2 2" ] || fail "after kc: cards refs = $(gauges)"
note "idle cards and references dropped after cms.superv_keep_s"

# 2. a rule with a longer window keeps them, and its window still decides
api PUT $C/rules/velocity "$OP_TOKEN" '{"kind":"velocity","action":"lock","max":2,"window_s":60}'
expect_status 200 "rule velocity"
sleep 1.2 # the rules are read again within a second
ev kb
ev kb
sleep 2.2
ev kc
[ "$(gauges | cut -d' ' -f1)" = 3 ] || fail "cards dropped within a rule's window: $(gauges)"
ev kb # the third event of kb within 60 s
jq -e '.decisions[0].card_id == "kb" and .decisions[0].rule == "velocity"' "$W/resp" >/dev/null ||
    fail "the kept window did not decide: $(cat "$W/resp")"
note "cards kept for the longest rule window; the window decided"
tsmd_stop
echo "cms superv keep: ok"
