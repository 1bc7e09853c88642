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

# ---- a service provider's steps (tests/tsm/provision_test.sh runs them on
# the eSE through orange and on the UICC through vodafone). They use T (the
# TSM's path), W, TSMCTL and the tests/tsmd/lib.sh api helpers.

# sp_preperso TOKEN SE SERVICE: SE is the body's selector ("msisdn":"..." or
# "cin":"..."); pre-personalizes -> the instance id.
sp_preperso() {
    api POST "$T/service-instances" "$1" "{$2,\"service_id\":$3,\"qualifier\":\"PAR-$3\"}"
    expect_status 201 "pre-personalization of service $3"
    jq -e '.state == "done" and .instance.state == "UnderDeployment:Installed"' "$W/resp" >/dev/null \
        || fail "pre-personalization: $(cat "$W/resp")"
    jq -er .instance.id "$W/resp"
}

sp_comm() { # TOKEN INSTANCE -> communication id
    api POST "$T/communications" "$1" "{\"instance_id\":$2,\"bearer\":\"ota\",\"max_scripts\":3}"
    expect_status 201 "communication on $2"
    jq -er .id "$W/resp"
}

sp_script() { # TOKEN COMM PURPOSE APDU... (answer in $W/resp)
    local tok=$1 cm=$2 purpose=$3
    shift 3
    api POST "$T/communications/$cm/scripts" "$tok" \
        "{\"purpose\":\"$purpose\",\"apdus\":$(printf '%s\n' "$@" | jq -R . | jq -sc .)}"
}

aes_kcv() { # KEY -> its AES KCV
    printf '01010101010101010101010101010101' | xxd -r -p \
        | openssl enc -aes-128-ecb -nopad -K "$1" | xxd -p -c 64 | cut -c1-6 | tr a-f A-F
}

put_key() { # NEWKEY -> the plain PUT KEY (kvn 30 -> 31, the same key thrice)
    local k=$1 c
    c=$(aes_kcv "$k")
    echo "80D83081$(printf '%02X' 70)31""8811""10$k""03$c""8811""10$k""03$c""8811""10$k""03$c""00"
}

# sp_perso TOKEN INSTANCE APP MK NEWKEY: personalizes the payment application
# (INSTALL [for personalization], STORE DATA: master key MK, PIN 1234),
# rotates the SP SD's keys to NEWKEY (PUT KEY) in one communication, then
# activates.
sp_perso() {
    local cm aidlen
    cm=$(sp_comm "$1" "$2")
    aidlen=$(printf '%02X' $((${#3} / 2)))
    sp_script "$1" "$cm" personalization \
        "80E62000$(printf '%02X' $((6 + ${#3} / 2)))0000${aidlen}${3}000000" \
        "80E288001A800010${4}80100431323334"
    expect_status 200 "personalization on $2"
    jq -e '.state == "done" and (.results[0].failed | length) == 0' "$W/resp" >/dev/null \
        || fail "personalization: $(cat "$W/resp")"
    sp_script "$1" "$cm" key_rotation "$(put_key "$5")"
    expect_status 200 "key rotation on $2"
    jq -e '.state == "done"' "$W/resp" >/dev/null || fail "rotation: $(cat "$W/resp")"
    api POST "$T/communications/$cm/end" "$1" '{"status":"success"}'
    expect_status 200 "end of communication $cm"
    api GET "$T/service-instances/$2" "$1"
    jq -e '.state == "UnderDeployment:Personalized" and .keys == "sp"' "$W/resp" >/dev/null \
        || fail "after personalization: $(cat "$W/resp")"
    api POST "$T/service-instances/$2/activate" "$1"
    expect_status 200 "activation of $2"
    jq -e '.instance.state == "DeployedOperational"' "$W/resp" >/dev/null \
        || fail "activation: $(cat "$W/resp")"
}

# sp_after_rotation TOKEN INSTANCE SD NEWKEY: a script the TSM would wrap is
# refused (409 keys_rotated, with the reason); the SP's own SCP03 session
# (kvn 31, its new keys) through the relay works. Prints the relay's output.
sp_after_rotation() {
    local cm
    cm=$(sp_comm "$1" "$2")
    sp_script "$1" "$cm" post_personalization "80CA00CF00"
    expect_status 409 "a wrapped script after the rotation"
    [ "$(api_err_code)" = keys_rotated ] || fail "refusal reason: $(cat "$W/resp")"
    jq -e '.error.message | test("rotated")' "$W/resp" >/dev/null || fail "no reason given"
    "$TSMCTL" --url "$TSMD_URL" --token "$1" sp relay "$cm" --sd "$3" --kvn 49 \
        --keys "$4" 80F24002024F0000 >"$W/relay.out" 2>&1 || fail "relay: $(cat "$W/relay.out")"
    grep -q "9000" "$W/relay.out" || fail "relay output: $(cat "$W/relay.out")"
    grep -q "r-mac verified" "$W/relay.out" || fail "relay not verified: $(cat "$W/relay.out")"
    api POST "$T/communications/$cm/end" "$1" '{"status":"success"}'
    expect_status 200 "end of the relay communication"
    tr '\n' ' ' <"$W/relay.out"
}

pay_job() { # MNO MSISDN CIN APDU... -> R-APDUs, one per line
    local id s
    api POST "/mno/$1/v1/jobs" "$OP_TOKEN" \
        "{\"msisdn\":\"$2\",\"se\":{\"cin\":\"$3\"},\"kind\":\"scripted\",\"apdus\":$(printf '%s\n' "${@:4}" | jq -R . | jq -sc .)}" \
        -H "Idempotency-Key: pay-$RANDOM$RANDOM"
    expect_status 201 "payment job"
    id=$(jq -r .id "$W/resp")
    for _ in $(seq 1 300); do
        api GET "/mno/$1/v1/jobs/$id?wait=5" "$OP_TOKEN"
        s=$(jq -r .state "$W/resp")
        case $s in done | failed) break ;; esac
    done
    jq -r '.scripts[0].rapdus[]' "$W/resp"
}

# pay_verify MNO MSISDN CIN APP MK: a payment (SELECT, GET PROCESSING
# OPTIONS, GENERATE AC) on the card through MNO; the ARQC must verify with
# the bank's master key MK. Prints "ARQC <ac> (ATC <atc>)".
pay_verify() {
    local cdol=0000000010000000000000000250000000000009782611210011223344 genac atc ac sk want
    local -a r
    mapfile -t r < <(pay_job "$1" "$2" "$3" "00A40400$(printf '%02X' $((${#4} / 2)))${4}00" \
        80A8000002830000 "80AE80001D${cdol}00")
    genac=${r[2]:-}
    [ "${genac: -4}" = 9000 ] || fail "GENERATE AC through $1: ${r[*]}"
    atc=$(echo "$genac" | grep -o '9F3602....' | cut -c7-10)
    ac=$(echo "$genac" | grep -o '9F2608.\{16\}' | cut -c7-22)
    sk=$(printf '%sF000000000000000000000000000' "$atc" | xxd -r -p \
        | openssl enc -aes-128-ecb -nopad -K "$5" | xxd -p -c 64)
    want=$(printf '%s1800%s' "$cdol" "$atc" | xxd -r -p \
        | openssl mac -cipher AES-128-CBC -macopt "hexkey:$sk" CMAC | cut -c1-16)
    [ "$ac" = "$want" ] || fail "the payment cryptogram $ac is not the bank's ($want)"
    echo "ARQC $ac (ATC $atc)"
}
