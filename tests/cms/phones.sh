# shellcheck shell=bash
# Phones for the cms flow tests (tests/cms/*_test.sh): se-agent processes on
# vse cards, enrolled in mno:orange of a tsmd started with tests/tsmd/lib.sh
# (sourced here).
#
#   phones_begin NAME TSMD SE_AGENT VSE PROFILES_DIR
#                                the test's arguments ($TSMD, $AGENT, $VSE,
#                                $PROFILES), its work dir $W, the EXIT hook
#                                that stops every agent
#   cms_tsmd_start [K=V...]      tsmd with cms and mno:orange (fast ticks, no
#                                backoff, 2 attempts), $OP_TOKEN, $P, $C
#   phones_enrol N...            phone N: device principal (IMEI, IMSI of
#                                card N), enrolled with SE $CINN, its token;
#                                then the subscriber $ALICE and her $TA
#   vse_start N                  a vse process for the card image $W/cN.img
#                                on $W/cN.sock ($W/vseN.log, trace: the
#                                C-APDUs the card received)
#   destroys N                   DESTROY commands card N received (INS DE)
#   device NAME IMEI IMSI        a device principal, prints its id
#   enrol PRINCIPAL MSISDN CIN   the device in mno with its SE
#   phone_token N PRINCIPAL      $W/devN.token
#   agent_start N [ENV=V...]     se-agent run for phone N (msisdn 3360000000N,
#                                reader eSE1 = card N), waits until online
#   agent_stop N                 SIGTERM (the phone detaches)
#   card ID CIN N [ISSUER]       a card of $ALICE on phone N for POST /cards
#                                (the ISD's keys; issuer bank1 by default)
#   card_state ID / wait_card ID STATE
#   act ID ACTION REASON KEY     the subscriber's request, 202 expected
#   pay N                        the SW of a payment SELECT on phone N's card
#                                (an mno job), "none" when the card did not
#                                answer

AGENT_PIDS=()
stop_agents() {
    local p
    for p in "${AGENT_PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    AGENT_PIDS=()
}

# shellcheck source=../tsmd/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../tsmd/lib.sh"

phones_begin() { # NAME TSMD SE_AGENT VSE PROFILES_DIR
    local t
    # shellcheck disable=SC2034 # read by lib.sh and the tests
    TSMD=$2 AGENT=$3 VSE=$4 PROFILES=$5
    for t in curl jq xxd; do
        command -v "$t" >/dev/null || fail "$t is missing (scripts/deps.sh installs it)"
    done
    # shellcheck disable=SC2034 # read by tsmd_cleanup (tests/tsmd/lib.sh)
    TSMD_CLEANUP_HOOK=stop_agents
    tsmd_work_init "$1"
    W=$TSMD_WORK
}

cms_tsmd_start() { # [K=V...]
    tsmd_config "sqlite:$W/var/tsmd.db" "log.level=info" "services.enabled=cms, mno:orange" \
        "mno.orange.backoff_s=0" "mno.orange.sweep_ms=50" "mno.orange.heartbeat_s=1" \
        "cms.tick_ms=50" "cms.backoff_s=0" "cms.max_attempts=2" "$@"
    tsmd_bootstrap ops
    TSMD_SETS+=(--set "cms.mno_url=$TSMD_URL")
    export OPENTSM_CMS_MNO_TOKEN=$OP_TOKEN
    tsmd_start
    P=/mno/orange/v1
    C=/cms/v1
}

imei_of() { # N (1..99) -> a 15-digit IMEI with its Luhn check digit
    local body d i sum=0
    body=356938035643$(printf '%02d' "$1")
    for ((i = 0; i < 14; i++)); do
        d=${body:i:1}
        if ((i % 2 == 1)); then
            d=$((d * 2))
            ((d > 9)) && d=$((d - 9))
        fi
        sum=$((sum + d))
    done
    echo "$body$(((10 - sum % 10) % 10))"
}

phones_enrol() { # N...
    local n d
    for n in "$@"; do
        d=$(device "phone$n" "$(imei_of "$n")" "20801123456789$((n - 1))")
        enrol "$d" "3360000000$n" "$(eval echo "\$CIN$n")"
        phone_token "$n" "$d"
    done
    ALICE=$(tsmd_principal subscriber alice)
    TA=$(tsmd_token "$ALICE")
}

vse_start() { # N
    "$VSE" run "$W/c$1.img" --listen "unix:$W/c$1.sock" --log-level trace >>"$W/vse$1.log" 2>&1 &
    TSMD_EXTRA_PIDS+=("$!")
    for _ in $(seq 1 100); do
        [ -S "$W/c$1.sock" ] && return 0
        sleep 0.05
    done
    fail "vse $1 did not listen"
}

destroys() { # N: DESTROY commands (INS DE, secured CLA 84) card N received
    grep -c 'C-APDU.*\b84DE' "$W/vse$1.log" || true
}

device() { # NAME IMEI IMSI -> principal id
    api POST /admin/v1/principals "$OP_TOKEN" \
        "{\"kind\":\"device\",\"name\":\"$1\",\"imei\":\"$2\",\"imsi\":\"$3\",\"mno\":\"orange\"}" \
        -H "Idempotency-Key: dev-$1"
    case $API_STATUS in 200 | 201) ;; *) fail "device $1: $API_STATUS $(cat "$W/resp")" ;; esac
    jq -er .id "$W/resp"
}

enrol() { # PRINCIPAL MSISDN CIN
    api POST "$P/devices" "$OP_TOKEN" "{\"principal_id\":$1,\"msisdn\":\"$2\",\"cins\":[\"$3\"]}" \
        -H "Idempotency-Key: enrol-$1"
    case $API_STATUS in 200 | 201) ;; *) fail "enrol $1: $API_STATUS $(cat "$W/resp")" ;; esac
}

phone_token() { # N PRINCIPAL
    (umask 077 && tsmd_token "$2" >"$W/dev$1.token")
}

agent_start() { # N [ENV=V...]
    local n=$1
    shift
    env "$@" "$AGENT" --state "$W/agent$n" --reader "eSE1=socket:unix:$W/c$n.sock" \
        --mno "$TSMD_URL$P" --token-file "$W/dev$n.token" --poll-ms 200 --log-level info \
        --location-area "208-01-4A2$n" run >>"$W/agent$n.log" 2>&1 &
    eval "AGENT$n=$!"
    AGENT_PIDS+=("$!")
    for _ in $(seq 1 200); do
        api GET "$P/status?msisdn=3360000000$n" "$OP_TOKEN"
        [ "$(jq -r .state "$W/resp")" = online ] && grep -q "event=stream_open" "$W/agent$n.log" &&
            return 0
        sleep 0.1
    done
    fail "phone$n not online: $(tail -5 "$W/agent$n.log")"
}

agent_stop() { # N
    local pid
    pid=$(eval echo "\$AGENT$1")
    kill -TERM "$pid"
    wait "$pid" || fail "se-agent $1 did not exit 0 on SIGTERM"
}

KEYS='{"enc":"404142434445464748494A4B4C4D4E4F","mac":"404142434445464748494A4B4C4D4E4F","dek":"404142434445464748494A4B4C4D4E4F"}'
card() { # ID CIN N [ISSUER]
    printf '{"card_id":"%s","subscriber":%s,"cin":"%s","mno":"orange","msisdn":"3360000000%s","imsi":"20801123456789%s","imei":"%s","issuer":"%s","aids":["A0000000041010"],"sd_aid":"A000000151000000","kvn":48,"keys":%s}' \
        "$1" "$ALICE" "$2" "$3" "$(($3 - 1))" "$(imei_of "$3")" "${4:-bank1}" "$KEYS"
}

card_state() { # ID
    api GET "$C/cards/$1" "$TA"
    jq -r .state "$W/resp"
}

wait_card() { # ID STATE
    local s
    for _ in $(seq 1 300); do
        s=$(card_state "$1")
        [ "$s" = "$2" ] && return 0
        sleep 0.1
    done
    api GET "$C/cards/$1/history" "$TA"
    fail "card $1 is $s, not $2: $(cat "$W/resp")"
}

act() { # ID ACTION REASON KEY
    api POST "$C/cards/$1/$2" "$TA" "{\"reason\":\"$3\"}" -H "Idempotency-Key: $4"
    expect_status 202 "$2 $1"
}

pay() { # N -> the SW of a payment SELECT on phone N's card (through an mno job)
    local id s
    api POST "$P/jobs" "$OP_TOKEN" \
        "{\"msisdn\":\"3360000000$1\",\"se\":{\"cin\":\"$(eval echo "\$CIN$1")\"},\"kind\":\"scripted\",\"apdus\":[\"00A4040007A000000004101000\"]}" \
        -H "Idempotency-Key: pay-$1-$RANDOM$RANDOM"
    expect_status 201 "payment job"
    id=$(jq -r .id "$W/resp")
    for _ in $(seq 1 200); do
        api GET "$P/jobs/$id" "$OP_TOKEN"
        s=$(jq -r .state "$W/resp")
        case $s in done | failed) break ;; esac
        sleep 0.1
    done
    case $s in
    done | failed) ;;
    *) fail "payment job $id: $s" ;;
    esac
    jq -r '.scripts[0].rapdus[0] // "none"' "$W/resp" | tail -c 5
}
