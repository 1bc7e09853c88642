#!/usr/bin/env bash
# mno.devcert (issue 10 point 3): a device's credential is a client
# certificate, bound to its principal by the operator at enrolment; tsmd on
# TLS with a client CA (scripts/certs.sh), se-agent with --cert/--key and a
# vse card.
#
# - phone1's agent registers, opens its push stream and runs a job with its
#   certificate alone (no token anywhere on the phone);
# - phone2's certificate (same CA) reaches only phone2: phone1's job session
#   is 404 with it; a certificate of the CA bound to nobody, and no
#   credential at all, are 401;
# - the operator withdraws phone1's certificate (DELETE .../certificates):
#   the open push stream is closed by the server, every request with the
#   certificate is then 401 (audited), and rebinding it makes it work again.
#
# usage: devcert_test.sh TSMD SE_AGENT VSE PROFILES_DIR CERTS_SH TSMCTL
set -euo pipefail

TSMD=$1
AGENT=$2
VSE=$3
PROFILES=$4
CERTS=$5
TSMCTL=$6
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../tsmd/lib.sh
. "$HERE/../tsmd/lib.sh"
need_tools curl jq openssl
tsmd_work_init mno-devcert
W=$TSMD_WORK

# ---- the PKI: the server, phone1 (certs.sh's client), phone2 and a stray ----------
"$CERTS" "$W/pki" phone1 >/dev/null 2>&1 || fail "certs.sh failed"
devcert() { # NAME: a client certificate of the same CA
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$W/pki/$1.key" 2>/dev/null
    openssl req -new -key "$W/pki/$1.key" -subj "/CN=$1" -out "$W/pki/$1.csr" 2>/dev/null
    printf 'extendedKeyUsage = clientAuth\n' >"$W/pki/ext.cnf"
    openssl x509 -req -in "$W/pki/$1.csr" -CA "$W/pki/ca.pem" -CAkey "$W/pki/ca.key" \
        -CAcreateserial -days 2 -extfile "$W/pki/ext.cnf" -out "$W/pki/$1.pem" 2>/dev/null ||
        fail "signing $1's certificate"
}
devcert phone2
devcert stray
subject() { openssl x509 -in "$1" -noout -subject -nameopt RFC2253 | sed 's/^subject=//'; }
S1=$(subject "$W/pki/client.pem")
S2=$(subject "$W/pki/phone2.pem")

CIN1=4F54534D45534501 # profiles/ese-central.json
"$VSE" create --profile "$PROFILES/ese-central.json" --out "$W/card.img" >/dev/null
"$VSE" run "$W/card.img" --listen "unix:$W/card.sock" >>"$W/vse.log" 2>&1 &
TSMD_EXTRA_PIDS+=("$!")

tsmd_config "sqlite:$W/var/tsmd.db" "log.level=info" "services.enabled=mno:orange" \
    "tls.cert=$W/pki/server.pem" "tls.key=$W/pki/server.key" "tls.client_ca=$W/pki/ca.pem" \
    "mno.orange.backoff_s=0" "mno.orange.sweep_ms=50"
TSMD_URL="https://127.0.0.1:$TSMD_PORT"
TSMD_CURL_OPTS=(--cacert "$W/pki/ca.pem")
tsmd_bootstrap ops
tsmd_start
P=/mno/orange/v1

# ---- enrolment: two devices, each with its certificate bound ---------------------
device() { # NAME IMEI IMSI MSISDN CIN SUBJECT -> principal id
    api POST /admin/v1/principals "$OP_TOKEN" \
        "{\"kind\":\"device\",\"name\":\"$1\",\"imei\":\"$2\",\"imsi\":\"$3\",\"mno\":\"orange\"}" \
        -H "Idempotency-Key: dev-$1"
    expect_status 201 "device $1"
    local id
    id=$(jq -er .id "$W/resp")
    api POST "/admin/v1/principals/$id/certificates" "$OP_TOKEN" "$(jq -nc --arg s "$6" '{subject:$s}')" \
        -H "Idempotency-Key: cert-$1"
    expect_status 200 "bind $1's certificate"
    api POST $P/devices "$OP_TOKEN" "{\"principal_id\":$id,\"msisdn\":\"$4\",\"cins\":[\"$5\"]}" \
        -H "Idempotency-Key: enrol-$1"
    expect_status 201 "enrol $1"
    echo "$id"
}
D1=$(device phone1 356938035643809 208011234567890 33600000001 $CIN1 "$S1")
D2=$(device phone2 356938035643817 208011234567891 33600000002 0A0B0C0D0E0F10111213 "$S2")

# ---- phone1 runs on its certificate --------------------------------------------
A=("$AGENT" --state "$W/agent" --reader "eSE1=socket:unix:$W/card.sock" --mno "$TSMD_URL$P"
    --ca "$W/pki/ca.pem" --cert "$W/pki/client.pem" --key "$W/pki/client.key")
for _ in $(seq 1 100); do
    "${A[@]}" status --json | jq -e '.readers[0].present' >/dev/null && break
    sleep 0.1
done
"${A[@]}" --log-level info --poll-ms 200 run >"$W/run.log" 2>&1 &
TSMD_EXTRA_PIDS+=("$!")
for _ in $(seq 1 200); do
    grep -q "event=stream_open" "$W/run.log" && break
    sleep 0.1
done
grep -q "event=stream_open" "$W/run.log" || fail "se-agent: no push stream: $(tail -5 "$W/run.log")"
api GET "$P/status?msisdn=33600000001" "$OP_TOKEN"
[ "$(jq -r .state "$W/resp")" = online ] || fail "phone1 not online: $(cat "$W/resp")"

job() { # KEY -> a scripted SELECT of the ISD for phone1, its id
    api POST $P/jobs "$OP_TOKEN" \
        "{\"msisdn\":\"33600000001\",\"se\":{\"cin\":\"$CIN1\"},\"kind\":\"scripted\",\"apdus\":[\"00A4040008A00000015100000000\"]}" \
        -H "Idempotency-Key: $1"
    expect_status 201 "job $1"
    jq -er .id "$W/resp"
}
job_state() {
    api GET "$P/jobs/$1" "$OP_TOKEN"
    jq -r .state "$W/resp"
}
J1=$(job j1)
for _ in $(seq 1 100); do
    [ "$(job_state "$J1")" = done ] && break
    sleep 0.1
done
[ "$(job_state "$J1")" = done ] || fail "job $J1 on the certificate: $(cat "$W/resp")"
jq -e '.scripts[0].rapdus[0] | endswith("9000")' "$W/resp" >/dev/null ||
    fail "the card did not answer the job: $(cat "$W/resp")"
note "phone1 ran job $J1 on its certificate alone"

# ---- another device's certificate, a stray one, none ----------------------------
dev() { # CERT_NAME METHOD PATH [BODY [curl args]]: as a device with that certificate
    local name=$1 method=$2 path=$3 body=${4:--}
    shift 3
    [ $# -gt 0 ] && shift
    api "$method" "$path" - "$body" --cert "$W/pki/$name.pem" --key "$W/pki/$name.key" "$@"
}
dev phone2 POST "$P/admin/jobs/$J1" - -H "X-Admin-Protocol: globalplatform-remote-admin/1.0" \
    -H "X-Admin-From: //se-id/cin/$CIN1;//agent-id/imei/356938035643809"
expect_status 404 "phone2's certificate on phone1's job session"
dev phone2 GET "$P/device"
expect_status 200 "phone2's certificate reads its own device"
[ "$(jq -r .msisdn "$W/resp")" = 33600000002 ] || fail "phone2 sees another device: $(cat "$W/resp")"
dev stray POST "$P/device/register" '{"location_area":"208-01-0001"}'
expect_status 401 "a certificate of the CA bound to nobody"
api POST "$P/device/register" - '{"location_area":"208-01-0001"}'
expect_status 401 "no credential"
note "another device's certificate: 404; a stray one and none: 401"

# ---- the operator withdraws phone1's certificate -------------------------------
SQ=$(jq -rn --arg s "$S1" '$s|@uri')
# The operator's tool: tsmctl principal unbind-cert (the API's DELETE).
"$TSMCTL" --url "$TSMD_URL" --ca "$W/pki/ca.pem" --token "$OP_TOKEN" --json \
    principal unbind-cert "$D1" "$S1" >"$W/unbind.json" || fail "tsmctl principal unbind-cert: rc $?"
jq -e '.unbound == true' "$W/unbind.json" >/dev/null || fail "unbind answer: $(cat "$W/unbind.json")"
"$TSMCTL" --url "$TSMD_URL" --ca "$W/pki/ca.pem" --token "$OP_TOKEN" \
    principal unbind-cert "$D1" "$S1" >/dev/null 2>&1 && fail "a second unbind succeeded"
api DELETE "/admin/v1/principals/$D2/certificates?subject=$SQ" "$OP_TOKEN"
expect_status 404 "phone1's certificate is not phone2's to unbind"
api DELETE "/admin/v1/principals/$D1/certificates" "$OP_TOKEN"
expect_status 400 "unbind without a subject"
for _ in $(seq 1 100); do
    grep -q "credential is no longer" "$W/tsmd.log" && break
    sleep 0.05
done
grep -q "credential is no longer" "$W/tsmd.log" || fail "phone1's stream stayed open after the unbind"
dev client GET "$P/device"
expect_status 401 "phone1's withdrawn certificate"
api GET "/admin/v1/audit?action=principal.cert.unbind" "$OP_TOKEN"
[ "$(jq -r '.items | length' "$W/resp")" = 1 ] || fail "the unbind is not audited: $(cat "$W/resp")"
api POST "/admin/v1/principals/$D1/certificates" "$OP_TOKEN" "$(jq -nc --arg s "$S1" '{subject:$s}')" \
    -H "Idempotency-Key: cert-phone1-again"
expect_status 200 "rebind phone1's certificate"
dev client GET "$P/device"
expect_status 200 "phone1's certificate bound again"
echo "mno.devcert: ok"
