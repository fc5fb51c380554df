"""The paper estimate of docs/scale.md: DynamoDB and Lambda cost and headroom at 1 M, 10 M and 100 M
requests a day, with budgets (global + per-key caps, pacing) and per-key rate limits on.

    .venv/bin/python bench/scale_estimate.py [--latency-s 2] [--peak 3] [--keys 20] [--values 25]

Nothing is measured here: every input is an assumption printed with the table (prices: us-east-1,
on-demand, as published after AWS's November 2024 DynamoDB price cut; checked 2026-12-07 against
third-party summaries of the AWS pricing page, not the page itself). Per request (bench/store_ops.py):
one rate-limit write (a ~100-byte item: 1 write unit), the reservation and the settle on one day
shard (each billed ceil(item size / 1 KB) write units, the larger of the item before and after), and
— on Lambda, where an environment serves one request at a time and rarely two within the 1 s pacing
cache — one pacing read of every shard (strongly consistent: ceil(size / 4 KB) read units each).

The day shard's size: the ledger's fields for every distinct tier/model/rule/arm value (~160 B each,
`spend.counters`), per router key ~220 B (ledger + kc/ks/ku), and the holds in flight on it (~70 B
each: requests in flight / shards). Shards are chosen as the smallest power of two that keeps every
shard under half of DynamoDB's 1,000 write units per second per partition at the peak rate.
"""

from __future__ import annotations

import argparse
import math

WRU_USD = 0.625 / 1e6  # on-demand write request unit, us-east-1
RRU_USD = 0.125 / 1e6  # on-demand read request unit (strongly consistent read of ≤ 4 KB)
LAMBDA_REQUEST_USD = 0.20 / 1e6
LAMBDA_GBS_USD = 0.0000133334  # arm64, first 6 B GB-s a month
PARTITION_WCU_S = 1000
MAX_SHARDS = 100  # budgets.shards' limit: one BatchGetItem reads them all
HEADROOM = 0.5
HOLD_BYTES, VALUE_BYTES, KEY_BYTES, FIXED_BYTES = 70, 160, 220, 200


def shard_kb(values: int, keys: int, in_flight: float, shards: int) -> float:
    return (FIXED_BYTES + values * VALUE_BYTES + keys * KEY_BYTES + HOLD_BYTES * in_flight / shards) / 1024


def estimate(per_day: float, args: argparse.Namespace) -> dict[str, float]:
    mean = per_day / 86_400
    peak = mean * args.peak
    in_flight = peak * args.latency_s
    shards = 1
    while True:
        kb = shard_kb(args.values, args.keys, in_flight, shards)
        wcu_write = math.ceil(kb)
        per_shard = 2 * wcu_write * peak / shards  # reserve + settle on the shard, write units/s
        if per_shard <= HEADROOM * PARTITION_WCU_S or shards >= MAX_SHARDS:
            break
        shards = min(shards * 2, MAX_SHARDS)
    mean_kb = shard_kb(args.values, args.keys, mean * args.latency_s, shards)
    wru = 1 + 2 * math.ceil(mean_kb)
    # Before issue 18: the same ledger item written once, plus 2 writes on each of two small budget
    # items (global, key: ~200 B + their own holds) per request.
    budget_kb = (FIXED_BYTES + HOLD_BYTES * mean * args.latency_s) / 1024
    old_wru = (
        1 + math.ceil(mean_kb - HOLD_BYTES * mean * args.latency_s / shards / 1024) + 4 * math.ceil(budget_kb)
    )
    rru = shards * math.ceil(mean_kb / 4)
    dynamo = per_day * (wru * WRU_USD + rru * RRU_USD)
    gbs = args.memory_mb / 1024 * args.latency_s
    lam = per_day * (LAMBDA_REQUEST_USD + gbs * LAMBDA_GBS_USD)
    return {
        "requests/day": per_day,
        "mean req/s": mean,
        "peak req/s": peak,
        "in flight (peak)": in_flight,
        "shards": shards,
        "shard KB (peak)": kb,
        "WCU/s per shard (peak)": per_shard,
        "WRU/request": wru,
        "WRU/request before (6 writes)": old_wru,
        "RRU/request": rru,
        "DynamoDB $/day": dynamo,
        "Lambda $/day": lam,
        "1-shard peak req/s limit": PARTITION_WCU_S
        / (2 * math.ceil(shard_kb(args.values, args.keys, in_flight, 1))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-s", type=float, default=2.0, help="mean request duration (Lambda billed)")
    parser.add_argument("--peak", type=float, default=3.0, help="peak / mean request rate")
    parser.add_argument("--keys", type=int, default=20, help="router keys with traffic in a day")
    parser.add_argument("--values", type=int, default=25, help="distinct tiers+models+rules+arms a day")
    parser.add_argument("--memory-mb", type=int, default=1024, help="Lambda memory (template default)")
    args = parser.parse_args()
    rows = [estimate(n, args) for n in (1e6, 1e7, 1e8)]
    print(f"assumptions: {vars(args)}; WRU ${WRU_USD * 1e6}/M, RRU ${RRU_USD * 1e6}/M, Lambda arm64")
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---:|" * len(rows[0]))
    for row in rows:
        print(
            "| "
            + " | ".join(f"{v:,.1f}" if isinstance(v, float) and v % 1 else f"{v:,.0f}" for v in row.values())
            + " |"
        )


if __name__ == "__main__":
    main()
