#!/usr/bin/env bash
# bench/provision: a payment service provisioned on BENCH_SES secure elements
# (default 1,000) through the whole chain (issue 12): a bank calls the
# central TSM (tsmd with tsm, mno:orange and mno:vodafone, SQLite), which
# runs every card operation as OTA jobs on the SE's network; the phones are
# fleetsim devices (half on each network, --central: cards with the central
# SD and the payment package) that run the admin sessions on their
# in-memory vse cards. The bank is bench_provision_sp (bench/provision_sp.c:
# BENCH_PAR threads, one keep-alive connection each). Per SE, as a bank
# would (BENCH_PAR SEs at once):
#
#   pre-personalization  (SP SD + temporary keys, instance, extradition:
#                         two SCP03 channels)
#   communication start, personalization script (INSTALL [for perso], STORE
#                         DATA: one channel), communication end
#   activation           (one channel)
#
# Each call waits for the card (tsm.wait_ms); an SE counts once its
# activation answered DeployedOperational. Figures (last line):
#
#   ses_per_s             SEs provisioned per second (wall clock)
#   apdus_per_s           the APDUs those SEs' cards processed per second
#                         (SELECT, INITIALIZE UPDATE, EXTERNAL AUTHENTICATE
#                         and the commands of each channel: 19 per SE)
#   overhead_ms_per_apdu  the run's wall-clock time per APDU (1000 /
#                         apdus_per_s) minus the in-memory card's own time
#                         per SCP03 APDU (bench_vse, when built): the time
#                         the chain spends outside the card per APDU (tsm,
#                         mno, the devices' HTTP and sessions, the database)
#                         with BENCH_PAR SEs in flight sharing it. With
#                         BENCH_PAR=1 it is one APDU's latency outside the
#                         card. The bank's client runs beside it (one
#                         process, bench/provision_sp.c).
#   device_round_trips_per_se  the devices' admin HTTP requests per SE
#
# The line before the last adds tsm_latency_ms_per_apdu: tsmd's own measure
# of each of the bank's calls (the whole chain behind it), summed per SE and
# divided by its APDUs. With BENCH_PAR calls in flight each one's time
# includes its wait behind the others, so this sum is about BENCH_PAR times
# the wall-clock share; at BENCH_PAR=1 the two figures meet.
#
# Target: overhead at most 0.5 ms per APDU on loopback (a measurement: the
# exit status is 0 either way once every SE is provisioned).
#
# tsmd runs as an operator would run a node that mostly writes:
# db.sqlite_mmap=false (with the file map every connection drops and refaults
# its map after each commit of another one: about a fifth more of tsmd's CPU
# here), db.pool=32 beside http.threads=64.
#
# Environment: OT_BUILD (default build-bench), BENCH_SES (1000), BENCH_PAR (16),
# BENCH_MMAP (false: db.sqlite_mmap).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${OT_BUILD:-build-bench}
case $B in /*) ;; *) B=$ROOT/$B ;; esac
TSMD=$B/src/bin/tsmd
FLEETSIM=$B/src/bin/fleetsim
SPDRV=$B/bench/bench_provision_sp
VSEB=$B/bench/bench_vse
N=${BENCH_SES:-1000}
PAR=${BENCH_PAR:-16}
for p in "$TSMD" "$FLEETSIM" "$SPDRV"; do
    [ -x "$p" ] || { echo "bench/provision: $p is missing (make bench-build)" >&2; exit 1; }
done
# shellcheck source=../tests/tsmd/lib.sh
. "$ROOT/tests/tsmd/lib.sh"
tsmd_work_init bench-provision
W=$TSMD_WORK
tsmd_config "sqlite:$W/var/tsmd.db" "log.level=info" "http.threads=64" "db.pool=32" \
    "db.sqlite_mmap=${BENCH_MMAP:-false}" "services.enabled=tsm, mno:orange, mno:vodafone" "tsm.wait_ms=60000" \
    "mno.orange.sweep_ms=50" "mno.vodafone.sweep_ms=50" "tsm.cache_warm=false"
tsmd_bootstrap ops
tsmd_start
T=/tsm/v1
SPID=$(tsmd_principal service_provider bank1)
TB=$(tsmd_token "$SPID")
(umask 077 && printf '%s' "$OP_TOKEN" >"$W/op.token" && printf '%s' "$TB" >"$W/sp.token")

# The phones: fleetsim devices i = 0..N-1, MSISDN 336<i on 10 digits>,
# CIN 4F545346<i in 8 hex digits>; the first half on orange, the rest on vodafone.
HALF=$((N / 2))
"$FLEETSIM" --url "$TSMD_URL" --op-token-file "$W/op.token" --sp-token-file "$W/sp.token" \
    --devices "$HALF" --instance orange --central --no-push --idle-s 3600 --run-tag bpo \
    >"$W/fleet1.out" 2>"$W/fleet1.err" &
F1=$!
TSMD_EXTRA_PIDS+=("$F1")
"$FLEETSIM" --url "$TSMD_URL" --op-token-file "$W/op.token" --sp-token-file "$W/sp.token" \
    --devices $((N - HALF)) --first "$HALF" --instance vodafone --central --no-push --idle-s 3600 \
    --run-tag bpv >"$W/fleet2.out" 2>"$W/fleet2.err" &
F2=$!
TSMD_EXTRA_PIDS+=("$F2")
# fleetsim prints its online phase after the idle time: watch the devices
# instead (every one of each half online, by its MSISDN).
online() { # NET FIRST COUNT -> devices online
    local c=0 i
    for i in $(seq "$2" $(($2 + $3 - 1))); do
        api GET "/mno/$1/v1/status?msisdn=336$(printf '%010d' "$i")" "$OP_TOKEN"
        [ "$(jq -r .state "$W/resp" 2>/dev/null)" = online ] && c=$((c + 1))
    done
    echo "$c"
}
for _ in $(seq 1 600); do
    kill -0 "$F1" 2>/dev/null || fail "fleetsim 1 exited: $(tail -3 "$W/fleet1.err")"
    kill -0 "$F2" 2>/dev/null || fail "fleetsim 2 exited: $(tail -3 "$W/fleet2.err")"
    [ "$(online orange $((HALF - 1)) 1)$(online vodafone $((N - 1)) 1)" = 11 ] && break
    sleep 0.5
done
[ "$(online orange 0 "$HALF")" = "$HALF" ] && [ "$(online vodafone "$HALF" $((N - HALF)))" = $((N - HALF)) ] ||
    fail "not every device is online"
note "$N devices online ($HALF on orange, $((N - HALF)) on vodafone)"

# The TSM's side: networks, the SEs (central SD keys), the service.
K5=505152535455565758595A5B5C5D5E5F
for net in orange vodafone; do
    api PUT "$T/mnos/$net" "$OP_TOKEN" "{\"url\":\"$TSMD_URL\",\"token\":\"$OP_TOKEN\"}"
    expect_status 201 "mno $net"
done
{
    echo "cin,se_type,mno,msisdn,profile_id,gp_version,jc_version,cert_level,expiry,free_memory,master_key_index,csd_kvn,csd_enc,csd_mac,csd_dek"
    for i in $(seq 0 $((N - 1))); do
        net=orange
        [ "$i" -lt "$HALF" ] || net=vodafone
        printf '4F545346%08X,eSE,%s,336%010d,fleet-central,2.3.1,3.0.5,EAL5+,2035-12-31,65536,1,48,%s,%s,%s\n' \
            "$i" "$net" "$i" $K5 $K5 $K5
    done
} >"$W/ses.csv"
api POST "$T/secure-elements:import" "$OP_TOKEN" - -H "Content-Type: text/csv" \
    --data-binary "@$W/ses.csv" -H "Idempotency-Key: bench-import"
case $API_STATUS in 200 | 201) ;; *) fail "SE import: $API_STATUS $(head -c 300 "$W/resp")" ;; esac
api POST "$T/services" "$OP_TOKEN" \
    "{\"sp_id\":$SPID,\"service\":\"payment\",\"version\":\"1.0\",\"flavor\":\"ese\",\"se_type\":\"eSE\",\"executable_load_file_aid\":\"F04F54534D02\",\"executable_module_aid\":\"F04F54534D0201\",\"application_aid\":\"A0000000041010\",\"sd_aid\":\"F04F54534D534410\"}" \
    -H "Idempotency-Key: bench-service"
expect_status 201 "service"
SID=$(jq -er .id "$W/resp")

ADMIN0=$(grep -c 'route=/mno/[a-z]*/v1/admin/jobs/' "$W/tsmd.log" || true)
note "provisioning $N SEs, $PAR at once"
START=$(date +%s%N)
"$SPDRV" "$TSMD_URL" "$W/sp.token" "$SID" "$N" "$PAR" >"$W/results"
END=$(date +%s%N)
ADMIN1=$(grep -c 'route=/mno/[a-z]*/v1/admin/jobs/' "$W/tsmd.log" || true)
OK=$(grep -c ' ok$' "$W/results" || true)
[ "$OK" = "$N" ] || fail "$((N - OK)) SEs not provisioned: $(grep -m3 fail "$W/results")"
kill -TERM "$F1" "$F2" 2>/dev/null || true

APDUS_PER_SE=19
CARD_US=0
if [ -x "$VSEB" ]; then # the in-memory card's time per SCP03 APDU (bench/vse.c)
    CARD_US=$(timeout 120 "$VSEB" 2>/dev/null | tail -1 |
        sed -n 's/.*inproc_scp03_per_s=\([0-9.]*\).*/\1/p' | awk '$1 > 0 { printf "%.2f", 1e6 / $1 }')
    CARD_US=${CARD_US:-0}
fi
# tsmd's own time of the bank's calls (ms= of each /tsm/v1 request).
TSM_MS=$(grep 'route=/tsm/v1/' "$W/tsmd.log" | grep -v 'route=/tsm/v1/secure-elements\|/mnos\|/services ' |
    sed -n 's/.* ms=\([0-9.]*\).*/\1/p' | awk '{ s += $1 } END { printf "%.1f", s }')
awk -v n="$N" -v start="$START" -v end="$END" -v apdus="$APDUS_PER_SE" -v card_us="$CARD_US" \
    -v admin=$((ADMIN1 - ADMIN0)) -v par="$PAR" -v tsm_ms="$TSM_MS" '
    { sum += $1 }
    END {
        wall = (end - start) / 1e9
        mean_ms = sum / n / 1000
        chain_ms = tsm_ms / n
        printf "ses=%d par=%d wall_s=%.1f client_ms_per_se=%.1f tsm_ms_per_se=%.1f tsm_latency_ms_per_apdu=%.3f card_us_per_apdu=%s\n",
            n, par, wall, mean_ms, chain_ms, chain_ms / apdus, card_us
        printf "ses_per_s=%.1f apdus_per_s=%.0f overhead_ms_per_apdu=%.3f device_round_trips_per_se=%.1f\n",
            n / wall, n * apdus / wall, wall * 1000 / (n * apdus) - card_us / 1000, admin / n
    }' "$W/results"
