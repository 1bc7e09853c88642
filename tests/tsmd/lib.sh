# shellcheck shell=bash
# Shared shell helpers for the tsmd integration tests and bench/api.sh.
# Source it after setting TSMD (and TSMCTL where needed) to the programs.
#
#   tsmd_work_init PREFIX     make $TSMD_WORK (a temp dir) and the EXIT trap
#   tsmd_free_port            print a free TCP port on 127.0.0.1
#   tsmd_config DB_URL [K=V]  write $TSMD_WORK/tsmd.ini: a loopback port, the
#                             given database, test-friendly limits, extra K=V
#   tsmd_start / tsmd_stop / tsmd_kill9 / tsmd_wait_ready
#   tsmd_bootstrap NAME       operator token into $OP_TOKEN
#   tsmd_principal KIND NAME  create a principal, print its id
#   tsmd_token PRINCIPAL_ID   issue a token, print it
#   api METHOD PATH TOKEN [BODY] [curl args...]
#                             one request; status in $API_STATUS, body in
#                             $TSMD_WORK/resp, headers in $TSMD_WORK/resp.h
#   fail MSG / note MSG / need_tools TOOL...
#
# Everything runs on 127.0.0.1; every process started here is stopped by the
# EXIT trap (tsmd_cleanup), which also prints tsmd's log when the test failed.

TSMD_PID=
TSMD_PORT=
TSMD_URL=
TSMD_WORK=
TSMD_KEEP=${TSMD_KEEP:-0}
TSMD_EXTRA_PIDS=()
# curl options for every request to tsmd (e.g. --cacert CA for https).
TSMD_CURL_OPTS=()
TSMD_CLEANUP_HOOK=${TSMD_CLEANUP_HOOK:-}

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

note() {
    echo "# $*" >&2
}

need_tools() { # TOOL...: each on PATH, or fail naming the one missing
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null || fail "$t is missing (scripts/deps.sh installs it)"
    done
}

tsmd_cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    if [ -n "$TSMD_CLEANUP_HOOK" ]; then
        "$TSMD_CLEANUP_HOOK" || true
    fi
    for p in "${TSMD_EXTRA_PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    if [ -n "$TSMD_PID" ]; then
        kill -KILL "$TSMD_PID" 2>/dev/null || true
        wait "$TSMD_PID" 2>/dev/null || true
        TSMD_PID=
    fi
    if [ "$rc" -ne 0 ] && [ -n "$TSMD_WORK" ] && [ -f "$TSMD_WORK/tsmd.log" ]; then
        echo "--- last 60 lines of tsmd.log" >&2
        tail -n 60 "$TSMD_WORK/tsmd.log" >&2
    fi
    if [ -n "$TSMD_WORK" ] && [ "$TSMD_KEEP" != 1 ]; then
        rm -rf "$TSMD_WORK"
    elif [ -n "$TSMD_WORK" ]; then
        echo "kept $TSMD_WORK" >&2
    fi
    exit "$rc"
}

tsmd_work_init() {
    TSMD_WORK=$(mktemp -d "${TMPDIR:-/tmp}/ot-$1.XXXXXX")
    chmod 755 "$TSMD_WORK"
    trap tsmd_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# A port nobody listens on now. Ports are drawn at random from a range that
# Linux does not use for ephemeral ports (ip_local_port_range starts at
# 32768), so a test's own outgoing connections cannot take it meanwhile.
tsmd_free_port() {
    local i p
    for i in $(seq 1 200); do
        p=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    fail "no free port found"
}

# tsmd_config DB_URL [section.key=value ...]
tsmd_config() {
    local db=$1 kv
    shift
    TSMD_PORT=$(tsmd_free_port)
    TSMD_URL="http://127.0.0.1:$TSMD_PORT"
    mkdir -p "$TSMD_WORK/var"
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$TSMD_WORK/kek.hex"
    chmod 600 "$TSMD_WORK/kek.hex"
    # Tests send many failed authentications on purpose: raise the per-IP
    # threshold so they get 401 rather than 429 (the 429 has its own check).
    cat >"$TSMD_WORK/tsmd.ini" <<EOF
[http]
listen = 127.0.0.1:$TSMD_PORT
threads = 4
[db]
url = $db
[keystore]
backend = file
kek_file = $TSMD_WORK/kek.hex
[auth]
fail_max = 100000
[ratelimit]
per_s = 0
[log]
level = info
EOF
    TSMD_SETS=()
    for kv in "$@"; do
        TSMD_SETS+=(--set "$kv")
    done
}

# Starts tsmd; when another process took the port between tsmd_free_port
# and tsmd's bind ("Address already in use"), picks another port (in the
# config file, TSMD_PORT and TSMD_URL) and starts again, up to 5 times.
tsmd_start() {
    local try mark rc
    for try in 1 2 3 4 5; do
        : >>"$TSMD_WORK/tsmd.log"
        mark=$(wc -l <"$TSMD_WORK/tsmd.log")
        (cd "$TSMD_WORK" && exec "$TSMD" --config "$TSMD_WORK/tsmd.ini" "${TSMD_SETS[@]}" \
            >>"$TSMD_WORK/tsmd.log" 2>&1) &
        TSMD_PID=$!
        rc=0
        TSMD_START_MARK=$mark tsmd_wait_ready || rc=$?
        [ "$rc" = 2 ] || return "$rc"
        note "port $TSMD_PORT was taken meanwhile; trying another"
        TSMD_PORT=$(tsmd_free_port)
        TSMD_URL="${TSMD_URL%%://*}://127.0.0.1:$TSMD_PORT" # keeps https
        sed -i "s/^listen = 127\.0\.0\.1:[0-9]*$/listen = 127.0.0.1:$TSMD_PORT/" "$TSMD_WORK/tsmd.ini"
    done
    fail "no free port after 5 tries"
}

# Waits for /readyz. Returns 2 (for tsmd_start) when tsmd exited because
# its port was taken (log lines after line TSMD_START_MARK), fails otherwise.
tsmd_wait_ready() {
    local i code
    for i in $(seq 1 200); do
        if ! kill -0 "$TSMD_PID" 2>/dev/null; then
            wait "$TSMD_PID" 2>/dev/null || true
            TSMD_PID=
            if [ -n "${TSMD_START_MARK:-}" ] &&
                tail -n "+$((TSMD_START_MARK + 1))" "$TSMD_WORK/tsmd.log" | grep -qi 'address already in use'; then
                return 2
            fi
            fail "tsmd exited during startup"
        fi
        # Ready: this tsmd says it listens (not another process on the port)
        # and answers /readyz.
        if [ -n "${TSMD_START_MARK:-}" ] &&
            ! tail -n "+$((TSMD_START_MARK + 1))" "$TSMD_WORK/tsmd.log" | grep -q '^tsmd: listening on'; then
            sleep 0.05
            continue
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 ${TSMD_CURL_OPTS[@]+"${TSMD_CURL_OPTS[@]}"} \
            "$TSMD_URL/readyz" || true)
        if [ "$code" = 200 ]; then
            return 0
        fi
        sleep 0.05
    done
    fail "tsmd not ready after 10 s"
}

# tsmd_bootstrap NAME: a new operator token in $OP_TOKEN (tsmd
# --bootstrap-operator works on the storage directly and exits).
tsmd_bootstrap() {
    OP_TOKEN=$(cd "$TSMD_WORK" && "$TSMD" --config "$TSMD_WORK/tsmd.ini" "${TSMD_SETS[@]}" \
        --bootstrap-operator "$1" 2>>"$TSMD_WORK/tsmd.log") || fail "bootstrap of operator $1 failed"
    [ -n "$OP_TOKEN" ] || fail "bootstrap printed no token"
}

# tsmd_principal KIND NAME: creates the principal through the API (as the
# operator); prints its id.
tsmd_principal() {
    api POST /admin/v1/principals "$OP_TOKEN" "{\"kind\":\"$1\",\"name\":\"$2\"}" \
        -H "Idempotency-Key: principal-$1-$2"
    case $API_STATUS in
    200 | 201) ;;
    *) fail "creating $1 $2: HTTP $API_STATUS: $(head -c 300 "$TSMD_WORK/resp")" ;;
    esac
    jq -er .id "$TSMD_WORK/resp"
}

# tsmd_token PRINCIPAL_ID: issues a token for it (as the operator); prints it.
tsmd_token() {
    api POST /admin/v1/tokens "$OP_TOKEN" "{\"principal_id\":$1}"
    case $API_STATUS in
    200 | 201) ;;
    *) fail "token for principal $1: HTTP $API_STATUS: $(head -c 300 "$TSMD_WORK/resp")" ;;
    esac
    jq -er .token "$TSMD_WORK/resp"
}

# tsmd_fleet_tokens SUBSCRIBER_NAME: the principals fleetsim's cms runs use
# (docs/fleetsim.md "cms"): a service provider "bank" and a subscriber; their
# tokens and the operator's in $TSMD_WORK/{op,sp,sub}.token (0600). Sets
# FLEET_SUB (the subscriber's id).
tsmd_fleet_tokens() {
    local sp
    sp=$(tsmd_principal service_provider bank)
    FLEET_SUB=$(tsmd_principal subscriber "$1")
    (
        umask 077
        printf '%s\n' "$OP_TOKEN" >"$TSMD_WORK/op.token"
        tsmd_token "$sp" >"$TSMD_WORK/sp.token"
        tsmd_token "$FLEET_SUB" >"$TSMD_WORK/sub.token"
    )
}

# SIGTERM: graceful stop; tsmd must exit 0 within 15 s.
tsmd_stop() {
    local i rc=0
    [ -n "$TSMD_PID" ] || return 0
    kill -TERM "$TSMD_PID"
    for i in $(seq 1 300); do
        kill -0 "$TSMD_PID" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$TSMD_PID" 2>/dev/null; then
        kill -KILL "$TSMD_PID"
        wait "$TSMD_PID" 2>/dev/null || true
        TSMD_PID=
        fail "tsmd did not stop within 15 s of SIGTERM"
    fi
    wait "$TSMD_PID" || rc=$?
    TSMD_PID=
    [ "$rc" -eq 0 ] || fail "tsmd exited $rc after SIGTERM"
}

tsmd_kill9() {
    [ -n "$TSMD_PID" ] || return 0
    kill -KILL "$TSMD_PID"
    wait "$TSMD_PID" 2>/dev/null || true
    TSMD_PID=
}

# api METHOD PATH TOKEN [BODY] [extra curl args...]: TOKEN "-" sends no
# Authorization header; BODY "-" sends none; a BODY starting with @ is a file.
api() {
    local method=$1 path=$2 token=$3 body=${4:--}
    local args=(-s -X "$method" -o "$TSMD_WORK/resp" -D "$TSMD_WORK/resp.h" -w '%{http_code}'
        --max-time 60)
    shift 3
    [ $# -gt 0 ] && shift
    if [ "$token" != - ]; then
        args+=(-H "Authorization: Bearer $token")
    fi
    if [ "$body" != - ]; then
        case $body in
        @*) args+=(--data-binary "$body") ;;
        *) args+=(--data-binary "$body") ;;
        esac
        args+=(-H "Content-Type: application/json")
    fi
    API_STATUS=$(curl "${args[@]}" ${TSMD_CURL_OPTS[@]+"${TSMD_CURL_OPTS[@]}"} "$@" "$TSMD_URL$path") ||
        API_STATUS=000
}

# expect_status WANT DESCRIPTION: checks $API_STATUS after api().
expect_status() {
    [ "$API_STATUS" = "$1" ] || fail "$2: HTTP $API_STATUS, want $1: $(head -c 400 "$TSMD_WORK/resp")"
}

# The error body's code slug, or "" when the body is not an error object.
api_err_code() {
    jq -r '.error.code // ""' "$TSMD_WORK/resp" 2>/dev/null || true
}

idem() {
    echo "t-$(date +%s%N)-$RANDOM"
}
