#!/usr/bin/env bash
# bench/chaos: a destroy campaign under SIGKILL (issue 13, acceptance
# "Chaos"; not in make test: minutes, and it kills processes on purpose).
#
# Two tsmd nodes with cms and mno:orange on one PostgreSQL
# (tests/pg/with_pg.sh), each node's cms driver reaching mno through its own
# node. CHAOS_AGENTS fleetsim processes (default 4) hold CHAOS_CARDS phones
# (default 1,000) between them (--hold, cards persisted as vse images in a
# state directory with their DESTROY log: a card keeps its state when its
# phone dies), agent k on node k % 2. Each node and each agent runs in a
# restart loop.
#
# The campaign: requesters ask cms to destroy every card (the subscriber's
# POST /cms/v1/cards/fc<i>/destroy, its own Idempotency-Key per card, on one
# node, the other when that one does not answer); a 202 is an acknowledged
# request. Meanwhile a killer sends SIGKILL at random moments (0 to 3 s
# apart) to a random node or agent, until CHAOS_KILLS kills (default 60). Then everything is left to
# settle (CHAOS_SETTLE_S, default 300) and counted:
#
#   destroyed   cards destroyed in cms whose card is TERMINATED (its image:
#               the card's own state, written atomically with the command)
#   duplicates  cards that ran a DESTROY to its end more than once (the
#               cards' logs: "R i" before the card runs a DESTROY, "X i SW"
#               after it ran; a kill between the two leaves an R without its
#               X: the card never ran that one, its image did not change)
#   lost        acknowledged requests whose card is not destroyed in cms
#
# Also printed: received_not_run= (DESTROYs that reached a card whose
# process was killed before the card ran them).
#
# Last line: kills= destroyed= duplicates= lost= (then cards= acked=
# node_kills= agent_kills= stalled= seconds=). Exit 0 when every card was
# destroyed exactly once and nothing acknowledged was lost.
#
# Environment: OT_BUILD (build dir, default build-bench), CHAOS_CARDS,
# CHAOS_AGENTS, CHAOS_KILLS, CHAOS_SETTLE_S, CHAOS_SEED (killer's RANDOM seed),
# CHAOS_KEEP=1 keeps the work directory (its path is printed).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OT_BUILD=${OT_BUILD:-build-bench}
case $OT_BUILD in
/*) ;;
*) OT_BUILD=$ROOT/$OT_BUILD ;;
esac
export OT_BUILD
TSMD=$OT_BUILD/src/bin/tsmd
FLEETSIM=$OT_BUILD/src/bin/fleetsim
CARDS=${CHAOS_CARDS:-1000}
AGENTS=${CHAOS_AGENTS:-4}
KILLS=${CHAOS_KILLS:-60}
SETTLE_S=${CHAOS_SETTLE_S:-300}

# shellcheck source=../tests/tsmd/lib.sh
. "$ROOT/tests/tsmd/lib.sh"
if [ ! -x "$TSMD" ] || [ ! -x "$FLEETSIM" ]; then
    fail "build tsmd and fleetsim first ($OT_BUILD)"
fi
for t in curl jq psql setsid; do
    command -v "$t" >/dev/null || fail "$t is missing (scripts/deps.sh installs it)"
done

if [ "${1:-}" != --inner ]; then
    OT_PG_OPTS="-c max_connections=200" exec "$ROOT/tests/pg/with_pg.sh" bash "$0" --inner
fi

# ---- inside with_pg.sh -------------------------------------------------------
TSMD_KEEP=${CHAOS_KEEP:-0}
tsmd_work_init chaos
W=$TSMD_WORK
mkdir -p "$W/state" "$W/run"
T0=$(date +%s)
# Short claims so that what a killed node held is taken over within seconds;
# a lease of 60 s (heartbeats every 5 s: on a loaded machine a 15 s lease
# expired under live devices and their interactive jobs went back to the
# queue); many attempts so that a destroy is never stalled by the chaos
# itself (an alert would wait for the operator). A session whose agent went
# quiet (killed before its journal said where it was) times out in 20 s.
tsmd_config "$OPENTSM_TEST_PG_URL" "log.level=warn" "services.enabled=cms, mno:orange" \
    "mno.orange.lease_s=60" "mno.orange.heartbeat_s=5" "mno.orange.sweep_ms=100" \
    "mno.orange.backoff_s=1" "mno.orange.deliver_timeout_s=5" "mno.orange.session_timeout_s=20" \
    "cms.tick_ms=50" "cms.claim_s=3" "cms.backoff_s=1" "cms.max_attempts=100" "db.pool=8"
tsmd_bootstrap ops
export OPENTSM_CMS_MNO_TOKEN=$OP_TOKEN
BASE_SETS=("${TSMD_SETS[@]}")
TSMD_SETS=("${BASE_SETS[@]}" --set "cms.mno_url=$TSMD_URL")
tsmd_start
SP=$(tsmd_principal service_provider bank)
SUB=$(tsmd_principal subscriber chaos-owner)
(
    umask 077
    printf '%s\n' "$OP_TOKEN" >"$W/op.token"
    tsmd_token "$SP" >"$W/sp.token"
    tsmd_token "$SUB" >"$W/sub.token"
)
SUB_TOKEN=$(cat "$W/sub.token")
tsmd_stop
PORT1=$TSMD_PORT
PORT2=$(tsmd_free_port)
URLS=("http://127.0.0.1:$PORT1" "http://127.0.0.1:$PORT2")

# A node's restart loop: tsmd in the foreground, its pid in run/nodeN.pid,
# started again 0.2 s after it died, until run/stop exists.
node_loop() { # N
    local n=$1 port url
    port=$([ "$n" = 1 ] && echo "$PORT1" || echo "$PORT2")
    url=${URLS[$((n - 1))]}
    while [ ! -e "$W/run/stop" ]; do
        (cd "$W" && exec "$TSMD" --config "$W/tsmd.ini" "${BASE_SETS[@]}" \
            --set "http.listen=127.0.0.1:$port" --set "cms.mno_url=$url" \
            >>"$W/tsmd$n.log" 2>&1) &
        echo $! >"$W/run/node$n.pid"
        wait $! 2>/dev/null || true
        [ -e "$W/run/stop" ] || sleep 0.2
    done
}
# An agent's restart loop: fleetsim --hold in a session of its own (SIGKILL
# goes to its whole process group: the parent and its worker), again 0.5 s
# after it died. Same run tag and slice each time: enrolment and import replay.
agent_loop() { # K
    local k=$1 first n url
    first=$((CARDS * k / AGENTS))
    n=$((CARDS * (k + 1) / AGENTS - first))
    url="${URLS[$((k % 2))]},${URLS[$(((k + 1) % 2))]}"
    while [ ! -e "$W/run/stop" ]; do
        setsid "$FLEETSIM" --url "$url" --instance orange --first "$first" --devices "$n" \
            --procs 1 --inflight 16 --op-token-file "$W/op.token" --sp-token-file "$W/sp.token" \
            --sub-token-file "$W/sub.token" --cms-subscriber "$SUB" --state-dir "$W/state" \
            --hold --idle-s 0 --phase-timeout-s 60 --run-tag chaos \
            >>"$W/agent$k.out" 2>>"$W/agent$k.err" &
        echo $! >"$W/run/agent$k.pid"
        wait $! 2>/dev/null || true
        [ -e "$W/run/stop" ] || sleep 0.5
    done
}
LOOPS=()
stop_all() {
    local f p
    touch "$W/run/stop"
    for f in "$W"/run/agent*.pid; do
        [ -e "$f" ] || continue
        p=$(cat "$f")
        kill -TERM "$p" 2>/dev/null || true
    done
    for f in "$W"/run/node*.pid; do
        [ -e "$f" ] || continue
        p=$(cat "$f")
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${LOOPS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    LOOPS=()
}
# shellcheck disable=SC2034 # read by tsmd_cleanup (tests/tsmd/lib.sh)
TSMD_CLEANUP_HOOK=stop_all

node_loop 1 &
LOOPS+=("$!")
node_loop 2 &
LOOPS+=("$!")
for u in "${URLS[@]}"; do
    for _ in $(seq 1 400); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$u/readyz" || true)" = 200 ] && break
        sleep 0.05
    done
done
for ((k = 0; k < AGENTS; k++)); do
    agent_loop "$k" &
    LOOPS+=("$!")
done
for ((k = 0; k < AGENTS; k++)); do
    for _ in $(seq 1 1200); do
        grep -q '^phase=hold' "$W/agent$k.out" 2>/dev/null && break
        sleep 0.1
    done
    grep -q '^phase=hold' "$W/agent$k.out" || fail "agent $k not online: $(tail -3 "$W/agent$k.err")"
done
note "$CARDS cards on $AGENTS agents and 2 nodes; the campaign starts"

# ---- the campaign -------------------------------------------------------------
# Requester r asks for the cards i = r, r + R, ... in turn: node (i % 2) first,
# the other one when that one does not answer 202 (or 409: the card already
# moved, which counts as acknowledged only when the same key answered 202
# before: it never does here).
REQUESTERS=8
requester() { # R
    local r=$1 i code node try
    for ((i = r; i < CARDS; i += REQUESTERS)); do
        node=$((i % 2))
        for try in $(seq 1 600); do
            code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X POST \
                -H "Authorization: Bearer $SUB_TOKEN" -H "Content-Type: application/json" \
                -H "Idempotency-Key: chaos-$i" -d '{"reason":"stolen","note":"chaos"}' \
                "${URLS[$node]}/cms/v1/cards/fc$i/destroy" || true)
            [ "$code" = 202 ] && break
            node=$((1 - node))
            [ "$try" = 1 ] || sleep 0.2
        done
        if [ "$code" = 202 ]; then
            echo "fc$i" >>"$W/acked.$r"
        else
            echo "fc$i $code" >>"$W/unacked.$r"
        fi
    done
}
killer() {
    local kills=0 nk=0 ak=0 t p f
    RANDOM=${CHAOS_SEED:-$$}
    while [ "$kills" -lt "$KILLS" ]; do
        sleep "$((RANDOM % 3)).$((RANDOM % 10))"
        t=$((RANDOM % (2 + AGENTS)))
        if [ "$t" -lt 2 ]; then
            f="$W/run/node$((t + 1)).pid"
        else
            f="$W/run/agent$((t - 2)).pid"
        fi
        p=$(cat "$f" 2>/dev/null || true)
        [ -n "$p" ] || continue
        if [ "$t" -lt 2 ]; then
            kill -KILL "$p" 2>/dev/null || continue
            nk=$((nk + 1))
        else
            kill -KILL -- "-$p" 2>/dev/null || continue
            ak=$((ak + 1))
        fi
        kills=$((kills + 1))
        echo "$(date +%s.%N) kill $(basename "$f" .pid)" >>"$W/kills.log"
    done
    echo "$kills $nk $ak" >"$W/run/kills"
}
killer &
KILLER=$!
RPIDS=()
for ((r = 0; r < REQUESTERS; r++)); do
    requester "$r" &
    RPIDS+=("$!")
done
for p in "${RPIDS[@]}"; do
    wait "$p"
done
touch "$W/run/requests_done"
wait "$KILLER"
read -r KILLS_DONE NODE_KILLS AGENT_KILLS <"$W/run/kills"
ACKED=$(cat "$W"/acked.* 2>/dev/null | sort -u | wc -l)
note "requests acknowledged: $ACKED of $CARDS; kills: $KILLS_DONE; settling"

# ---- settle and count -----------------------------------------------------------
pg() { psql "$OPENTSM_TEST_PG_URL" -Atqc "$1"; }
DONE=0
for _ in $(seq 1 "$SETTLE_S"); do
    DONE=$(pg "SELECT COUNT(*) FROM cms_cards WHERE state = 'destroyed'")
    [ "$DONE" -ge "$CARDS" ] && break
    sleep 1
done
stop_all
pg "SELECT card_id FROM cms_cards WHERE state = 'destroyed'" | sort >"$W/cms_destroyed"
STALLED=$(pg "SELECT COUNT(*) FROM cms_actions WHERE state = 'stalled'")
cat "$W"/state/destroys.*.log >"$W/destroys.all" 2>/dev/null || true
for img in "$W"/state/card-*.img; do
    i=${img##*/card-}
    [ "$("$OT_BUILD/src/bin/vse" inspect "$img" --json | jq -r .lcs)" != TERMINATED ] || echo "fc${i%.img}"
done | sort >"$W/card_terminated"
DUPS=$(awk '$1 == "X" {print $2}' "$W/destroys.all" | sort | uniq -d | wc -l)
NOT_RUN=$(($(grep -c '^R ' "$W/destroys.all" || true) - $(grep -c '^X ' "$W/destroys.all" || true)))
DESTROYED=$(comm -12 "$W/cms_destroyed" "$W/card_terminated" | wc -l)
cat "$W"/acked.* 2>/dev/null | sort -u >"$W/acked"
LOST=$(comm -23 "$W/acked" "$W/cms_destroyed" | wc -l)
if [ "$LOST" != 0 ] || [ "$DESTROYED" != "$CARDS" ] || [ "$DUPS" != 0 ]; then
    note "not destroyed in cms: $(comm -23 "$W/acked" "$W/cms_destroyed" | head -5 | tr '\n' ' ')"
    note "destroyed in cms, the card not TERMINATED: $(comm -23 "$W/cms_destroyed" "$W/card_terminated" | head -5 | tr '\n' ' ')"
    note "ran a DESTROY twice: $(awk '$1 == "X" {print $2}' "$W/destroys.all" | sort | uniq -d | head -5 | tr '\n' ' ')"
    pg "SELECT c.card_id, c.state, a.state, a.attempts, a.result FROM cms_cards c JOIN cms_actions a ON a.card = c.id WHERE c.state <> 'destroyed' LIMIT 10" >&2 || true
fi
[ "$TSMD_KEEP" = 1 ] && note "work directory kept: $W"
echo "kills=$KILLS_DONE destroyed=$DESTROYED duplicates=$DUPS lost=$LOST cards=$CARDS acked=$ACKED received_not_run=$NOT_RUN node_kills=$NODE_KILLS agent_kills=$AGENT_KILLS stalled=$STALLED seconds=$(($(date +%s) - T0))"
[ "$LOST" = 0 ] && [ "$DESTROYED" = "$CARDS" ] && [ "$DUPS" = 0 ]
