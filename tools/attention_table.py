#!/usr/bin/env python3
"""attention_table.py — the attention table of docs/PERFORMANCE.md from benchmark rounds.

Each round is four JSON-lines files in DIR, written back to back:
  qkv_t1_R.json    build-rel/bench/bench_attention --quick --threads 1
  torch_t1_R.json  tools/.venv/bin/python tools/bench_torch_attention.py --quick --threads 1
  qkv_t2_R.json    ... --threads 2
  torch_t2_R.json  ... --threads 2
for R = 1..N. Per shape it prints the median over the rounds of qkv's median ms and % of peak,
of PyTorch's median ms, of the per-round ratio PyTorch ms / qkv ms (two programs run back to
back), of the unfused-OpenBLAS and reference ratios, and of the 1-thread / 2-thread time.

Usage: python3 tools/attention_table.py DIR N   (standard library only)
"""
import json
import statistics
import sys


def load(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.startswith("{")]


def key(j):
    return (j["op"], j.get("B"), j.get("Tq"), j.get("Tk"), j.get("Hq"), j.get("Hk"), j.get("D"),
            j.get("causal"), j.get("padded", 0))


def rounds(d, n, threads):
    out = []
    for r in range(1, n + 1):
        q = load(f"{d}/qkv_t{threads}_{r}.json")
        t = load(f"{d}/torch_t{threads}_{r}.json")
        peak = [j["gflops"] for j in q if j["op"] == "fma_peak"][0]
        out.append(({key(j): j for j in q if "median_ms" in j},
                    {key(j): j for j in t if "median_ms" in j}, peak))
    return out


def ratio(x):
    return "%.2f×" % x if x else "—"


def main():
    d, n = sys.argv[1], int(sys.argv[2])
    r1, r2 = rounds(d, n, 1), rounds(d, n, 2)
    med = statistics.median
    print("FMA peaks measured: 1 thread", [x[2] for x in r1], "2 threads", [x[2] for x in r2])
    print()
    print("| op | B, Tq/Tk, Hq/Hk, D | causal | 1 thread: qkv ms | % peak | PyTorch ms | vs PyTorch "
          "| vs unfused OpenBLAS | vs reference | 2 threads: qkv ms | % peak | PyTorch ms "
          "| vs PyTorch | 2 threads / 1 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for k, j in r1[0][0].items():
        q1 = med([x[0][k]["median_ms"] for x in r1])
        p1 = med([x[0][k]["pct_peak"] for x in r1])
        t1 = med([x[1][k]["median_ms"] for x in r1])
        v1 = med([x[1][k]["median_ms"] / x[0][k]["median_ms"] for x in r1])
        ob = [x[0][k].get("openblas_ratio") for x in r1]
        ob = med(ob) if None not in ob else None
        rf = [y for y in (x[0][k].get("ref_ratio") for x in r1) if y]
        rf = med(rf) if rf else None
        q2 = med([x[0][k]["median_ms"] for x in r2])
        p2 = med([x[0][k]["pct_peak"] for x in r2])
        t2 = med([x[1][k]["median_ms"] for x in r2])
        v2 = med([x[1][k]["median_ms"] / x[0][k]["median_ms"] for x in r2])
        sc = med([a[0][k]["median_ms"] / b[0][k]["median_ms"] for a, b in zip(r1, r2)])
        shp = f"{j['B']}, {j['Tq']}/{j['Tk']}, {j['Hq']}/{j['Hk']}, {j['D']}"
        shp += " padded" if j.get("padded") else ""
        op = {"attention_fwd": "fwd", "attention_bwd": "bwd", "decode": "decode"}[j["op"]]
        print(f"| {op} | {shp} | {j['causal']} | {q1:.1f} | {p1:.0f}% | {t1:.1f} | {ratio(v1)} "
              f"| {ratio(ob)} | {ratio(rf)} | {q2:.1f} | {p2:.0f}% | {t2:.1f} | {ratio(v2)} "
              f"| {sc:.2f}× |")


if __name__ == "__main__":
    main()
