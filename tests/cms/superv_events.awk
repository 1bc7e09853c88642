# A stream of payment events as NDJSON for supervision's acceptance test and
# bench/supervision.sh: n events over `cards` cards (card 0 is `card0`, the
# others f0001..), one every 864 ms of simulated time from t0 (ms), each
# card always in its own location area; card k gets a wrong PIN when
# i % 97 == 0 (at most one a day per card: no rule fires on it). Unless
# fraud < 0, the events fraud..fraud+3 are replaced by a burst of 4 wrong
# PINs on card0 within a minute (ids x1..x4): the one pattern to find.
#
# usage: awk -v n=100000 -v cards=1000 -v t0=MS -v card0=c1 -v fraud=50000 -f superv_events.awk
BEGIN {
    for (i = 0; i < n; i++) {
        k = i % cards
        card = k == 0 ? card0 : sprintf("f%04d", k)
        pin = i % 97 == 0 ? "wrong" : "ok"
        at = t0 + i * 864
        id = sprintf("e%07d", i)
        if (fraud >= 0 && i >= fraud && i < fraud + 4) {
            card = card0
            pin = "wrong"
            at = t0 + fraud * 864 + (i - fraud) * 20000
            id = "x" (i - fraud + 1)
            k = 0
        }
        printf "{\"id\":\"%s\",\"card_id\":\"%s\",\"at\":%.0f,\"amount\":%d,\"currency\":\"EUR\",\"merchant\":\"m-%d\",\"location_area\":\"LA-%d\",\"pin\":\"%s\"}\n", \
            id, card, at, 100 + (i * 7) % 5000, i % 300, k % 50, pin
    }
}
