#!/usr/bin/env bash
# cms.agent_crash (issue 13 point 4; docs/se-agent.md "The job's steps"): the
# phone reboots at each step of the terminal side of a destroy (seed 000
# figure 5: receive, have the card authenticate it, execute, report), and
# the card is destroyed exactly once all the same.
#
# A destroy is the two-batch SCP03 job of cms (script 1: INITIALIZE UPDATE;
# script 2: EXTERNAL AUTHENTICATE and DESTROY, wrapped). For each crash point
# STEP:N (se-agent's OPENTSM_AGENT_CRASH_AT: SIGKILL there), phone N... runs
# one card's destroy, dies at that point, is started again, and then:
#
#   received:1   nothing reached the card: script 1 fetched again and run;
#                destroyed on the R-MAC, no unknown outcome
#   executing:1, executed:1, reported:1, received:2
#                the card ran INITIALIZE UPDATE, and the restart (a card
#                reset) ended its session: script 2 is never sent; the job
#                ends outcome_unknown, cms reads the card (alive) and
#                destroys it with a new job, on the R-MAC
#   executing:2  the card ran the DESTROY, the agent did not see the answer:
#                outcome_unknown, cms reads the card (its life cycle state
#                under the R-MAC): TERMINATED, destroyed, no second DESTROY
#   executed:2, reported:2
#                the answers were kept: reported (again) after the restart,
#                destroyed on the R-MAC, no unknown outcome
#
# Each card received exactly one DESTROY (counted in the card's trace log).
# Then a ninth card whose issuer destroys the payment application only
# (software, scope app) with the agent killed at executing:2: cms reads the
# card's application list under the R-MAC, finds the application gone, and
# records the destroy; the card received one DELETE.
#
# usage: crash_test.sh TSMD SE_AGENT VSE PROFILES_DIR
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=phones.sh
. "$HERE/phones.sh"
phones_begin cms-crash "$@"

POINTS=(received:1 executing:1 executed:1 reported:1 received:2 executing:2 executed:2 reported:2)
N=${#POINTS[@]}
APP=$((N + 1))
jq '.isd.i = "70"' "$PROFILES/ese-central.json" >"$W/p.json"
for n in $(seq 1 "$APP"); do
    eval "CIN$n=4F54534D455345$(printf '%02d' "$n")"
    jq ".cin = \"$(eval echo "\$CIN$n")\"" "$W/p.json" >"$W/p$n.json"
    "$VSE" create --profile "$W/p$n.json" --out "$W/c$n.img" >/dev/null
    vse_start "$n"
done

cms_tsmd_start
# shellcheck disable=SC2046
phones_enrol $(seq 1 "$APP")
api PUT "$C/policies/bank_app" "$OP_TOKEN" '{"mode":"software","scope":"app"}'
expect_status 200 "policy bank_app"
CARDS=
for n in $(seq 1 "$N"); do
    CARDS="$CARDS${CARDS:+,}$(card "c$n" "$(eval echo "\$CIN$n")" "$n")"
done
CARDS="$CARDS,$(card "c$APP" "$(eval echo "\$CIN$APP")" "$APP" bank_app)"
api POST $C/cards "$OP_TOKEN" "{\"cards\":[$CARDS]}" -H "Idempotency-Key: import"
expect_status 201 "import"

for n in $(seq 1 "$N"); do
    at=${POINTS[$((n - 1))]}
    agent_start "$n" "OPENTSM_AGENT_CRASH_AT=$at"
    act "c$n" destroy lost "d$n"
    pid=$(eval echo "\$AGENT$n")
    rc=0
    wait "$pid" || rc=$?
    [ "$rc" = 137 ] || fail "$at: se-agent ended with $rc, not by SIGKILL: $(tail -5 "$W/agent$n.log")"
    grep -q "event=crash_point at=$at" "$W/agent$n.log" || fail "$at: not killed there"
    want=$at
    case $at in reported:*) want=executed:${at#*:} ;; esac
    jq -e --arg s "${want%:*}" --argjson n "${want#*:}" '.step == $s and .script == $n' \
        "$W/agent$n/session.json" >/dev/null ||
        fail "$at: the agent's state is not $want: $(cat "$W/agent$n/session.json")"
    if [ "$at" != reported:2 ]; then # there mno had the card's answers before the crash
        [ "$(card_state "c$n")" != destroyed ] || fail "$at: destroyed before the card's answers"
    fi

    agent_start "$n" # the phone boots again
    wait_card "c$n" destroyed
    [ "$(destroys "$n")" = 1 ] || fail "$at: card $n received $(destroys "$n") DESTROY commands"
    [ ! -f "$W/agent$n/session.json" ] || fail "$at: the agent kept its session state"
    api GET "$C/cards/c$n/history" "$TA"
    unknown=$(jq '[.items[] | select(.event == "interrupted")] | length' "$W/resp")
    proof=$(jq -r '[.items[] | select(.event == "destroyed")][0].detail.proof' "$W/resp")
    read=$(jq -r '[.items[] | select(.event == "destroyed")][0].detail.card // "-"' "$W/resp")
    case $at in
    received:1 | executed:2 | reported:2)
        grep -q "event=session_resumed" "$W/agent$n.log" || fail "$at: the session was not resumed"
        [ "$unknown" = 0 ] && [ "$proof" = "r-mac verified" ] ||
            fail "$at: unknown=$unknown proof=$proof: $(cat "$W/resp")"
        ;;
    executing:2)
        [ "$unknown" = 1 ] && [ "$proof" = "r-mac verified" ] && [ "$read" = terminated ] ||
            fail "$at: unknown=$unknown proof=$proof read=$read: $(cat "$W/resp")"
        ;;
    *)
        grep -q 'C-APDU.*\b84DE' "$W/vse$n.log" || fail "$at: no DESTROY at all"
        [ "$unknown" = 1 ] && [ "$proof" = "r-mac verified" ] ||
            fail "$at: unknown=$unknown proof=$proof: $(cat "$W/resp")"
        jq -e '[.items[] | select(.event == "verified_not_destroyed")] | length == 1' "$W/resp" \
            >/dev/null || fail "$at: the card was not read first: $(cat "$W/resp")"
        ;;
    esac
    jq -e '[.items[] | select(.event == "retry")] | length == 0' "$W/resp" >/dev/null ||
        fail "$at: a failed attempt on the way: $(cat "$W/resp")"
    agent_stop "$n"
    note "$at: destroyed once (unknown outcomes $unknown, proof: $proof, card read: $read)"
done

# --- scope app: the application list read after an unknown outcome ----------------
n=$APP
agent_start "$n" OPENTSM_AGENT_CRASH_AT=executing:2
act "c$n" destroy lost "d$n"
rc=0
wait "$(eval echo "\$AGENT$n")" || rc=$?
[ "$rc" = 137 ] || fail "app scope: se-agent ended with $rc, not by SIGKILL"
agent_start "$n"
wait_card "c$n" destroyed
[ "$(grep -c 'C-APDU.*84E40000' "$W/vse$n.log")" = 1 ] || fail "app scope: not one DELETE"
[ "$(destroys "$n")" = 0 ] || fail "app scope: a DESTROY was sent"
api GET "$C/cards/c$n/history" "$TA"
jq -e '[.items[] | select(.event == "destroyed")][0].detail | .proof == "r-mac verified"
    and .card == "applications gone"' "$W/resp" >/dev/null ||
    fail "app scope: not destroyed on the read list: $(cat "$W/resp")"
"$VSE" inspect "$W/c$n.img" --json | jq -e '.lcs == "SECURED"' >/dev/null || fail "app scope: card changed"
agent_stop "$n"
note "app scope, executing:2: destroyed once (card read: applications gone)"

stop_agents
tsmd_stop
echo "cms agent crash: ok"
