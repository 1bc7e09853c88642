# shellcheck shell=bash
# Shared by the tests/tsm scripts (sourced after tests/tsmd/lib.sh): vse
# cards, phones (a device principal enrolled on an mno instance, se-agent
# with the card as its reader) and their clean-up. Expects AGENT and VSE.

# tsm_test_init NAME: checks the tools, makes the work directory ($W) and
# stops the agents at exit.
tsm_test_init() {
    local t
    for t in curl jq xxd openssl sqlite3; do
        command -v "$t" >/dev/null || fail "$t is missing (scripts/deps.sh installs it)"
    done
    AGENT_PIDS=()
    # shellcheck disable=SC2034 # read by tsmd_cleanup (tests/tsmd/lib.sh)
    TSMD_CLEANUP_HOOK=stop_agents
    tsmd_work_init "$1"
    W=$TSMD_WORK
}

stop_agents() {
    local p
    for p in "${AGENT_PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}

start_vse() { # N: runs $W/cN.img on $W/cN.sock
    "$VSE" run "$W/c$1.img" --listen "unix:$W/c$1.sock" --log-level debug >>"$W/vse$1.log" 2>&1 &
    TSMD_EXTRA_PIDS+=("$!")
    for _ in $(seq 1 100); do
        [ -S "$W/c$1.sock" ] && return 0
        sleep 0.05
    done
    fail "vse $1 did not listen"
}

device() { # NAME IMEI IMSI MNO -> principal id
    api POST /admin/v1/principals "$OP_TOKEN" \
        "{\"kind\":\"device\",\"name\":\"$1\",\"imei\":\"$2\",\"imsi\":\"$3\",\"mno\":\"$4\"}" \
        -H "Idempotency-Key: dev-$1"
    case $API_STATUS in 200 | 201) ;; *) fail "device $1: $API_STATUS $(cat "$W/resp")" ;; esac
    jq -er .id "$W/resp"
}

enrol() { # MNO PRINCIPAL MSISDN CIN
    api POST "/mno/$1/v1/devices" "$OP_TOKEN" "{\"principal_id\":$2,\"msisdn\":\"$3\",\"cins\":[\"$4\"]}" \
        -H "Idempotency-Key: enrol-$2"
    case $API_STATUS in 200 | 201) ;; *) fail "enrol $2: $API_STATUS $(cat "$W/resp")" ;; esac
}

agent_start() { # N MNO: phone N (MSISDN 3360000000N, token $W/devN.token) online
    "$AGENT" --state "$W/agent$1" --reader "eSE1=socket:unix:$W/c$1.sock" --mno "$TSMD_URL/mno/$2/v1" \
        --token-file "$W/dev$1.token" --poll-ms 200 --log-level info run >>"$W/agent$1.log" 2>&1 &
    AGENT_PIDS+=("$!")
    for _ in $(seq 1 200); do
        api GET "/mno/$2/v1/status?msisdn=3360000000$1" "$OP_TOKEN"
        [ "$(jq -r .state "$W/resp")" = online ] && grep -q "event=stream_open" "$W/agent$1.log" && return 0
        sleep 0.1
    done
    fail "phone$1 not online: $(tail -5 "$W/agent$1.log")"
}

# two_phones CIN1 CIN2: phone1 (card 1) on orange, phone2 (card 2) on
# vodafone, enrolled and online.
two_phones() {
    local d1 d2
    d1=$(device phone1 356938035643809 208011234567890 orange)
    d2=$(device phone2 356938035643817 208151234567891 vodafone)
    enrol orange "$d1" 33600000001 "$1"
    enrol vodafone "$d2" 33600000002 "$2"
    (umask 077 && tsmd_token "$d1" >"$W/dev1.token" && tsmd_token "$d2" >"$W/dev2.token")
    agent_start 1 orange
    agent_start 2 vodafone
}
