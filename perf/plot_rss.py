#!/usr/bin/env python3
"""Renders an RSS-over-time CSV (seconds,rss_kib,clients[,...]) as an SVG line chart and
prints the figures: the least-squares slope of RSS after the warm-up, and RSS at the end
of the warm-up, at the end and at its peak. Standard library only.

usage: plot_rss.py CSV SVG [--warmup SECONDS] [--until SECONDS] [--title TEXT]

The slope and the "after warm-up" figures cover [--warmup, --until] (default: to the end).
"""
import argparse
import csv
import json


def slope(xs, ys):
    n = len(xs)
    if n < 2:
        return float("nan"), float("nan")
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    b = sxy / sxx if sxx else float("nan")
    return b, my - b * mx


def nice_step(span, ticks=6):
    raw = span / ticks
    mag = 10 ** len(str(int(raw))) / 10 if raw >= 1 else 1
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("svg")
    ap.add_argument("--warmup", type=float, default=120.0)
    ap.add_argument("--until", type=float, default=float("inf"))
    ap.add_argument("--title", default="certstream-server RSS")
    a = ap.parse_args()
    rows = [r for r in csv.DictReader(open(a.csv)) if r.get("rss_kib")]
    t = [float(r["seconds"]) for r in rows]
    rss = [int(r["rss_kib"]) / 1024 for r in rows]  # MiB
    clients = [int(r.get("clients") or 0) for r in rows]
    after = [(x, y) for x, y in zip(t, rss) if a.warmup <= x <= a.until]
    b, c = slope([x for x, _ in after], [y for _, y in after])
    warm_end = after[0][1] if after else float("nan")
    figures = {
        "samples": len(t),
        "seconds": round(t[-1] - t[0], 1) if t else 0,
        "window_seconds": [a.warmup, min(a.until, t[-1]) if t else None],
        "rss_mib_at_start": round(rss[0], 1) if rss else None,
        "rss_mib_after_warmup": round(warm_end, 1),
        "rss_mib_end_of_window": round(after[-1][1], 1) if after else None,
        "rss_mib_end": round(rss[-1], 1) if rss else None,
        "rss_mib_peak": round(max(rss), 1) if rss else None,
        "rss_mib_min_after_warmup": round(min(y for _, y in after), 1) if after else None,
        "rss_mib_max_after_warmup": round(max(y for _, y in after), 1) if after else None,
        "slope_mib_per_hour_after_warmup": round(b * 3600, 2),
        "clients_mean": round(sum(clients) / len(clients)) if clients else 0,
        "clients_max": max(clients) if clients else 0,
    }

    # The chart.
    W, H, L, R, T, B = 900, 420, 70, 70, 40, 50
    pw, ph = W - L - R, H - T - B
    tmax = max(t) if t else 1
    ymax = max(rss) * 1.15 if rss else 1
    cmax = max(max(clients), 1) * 1.15 if clients else 1
    X = lambda x: L + pw * x / tmax
    Y = lambda y: T + ph * (1 - y / ymax)
    YC = lambda y: T + ph * (1 - y / cmax)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{a.title}</text>',
    ]
    step = nice_step(ymax)
    y = 0.0
    while y <= ymax:
        out.append(f'<line x1="{L}" y1="{Y(y):.1f}" x2="{L + pw}" y2="{Y(y):.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{L - 6}" y="{Y(y) + 4:.1f}" text-anchor="end">{y:g}</text>')
        y += step
    cstep = nice_step(cmax)
    y = 0.0
    while y <= cmax:
        out.append(f'<text x="{L + pw + 6}" y="{YC(y) + 4:.1f}" fill="#888">{y:g}</text>')
        y += cstep
    tstep = nice_step(tmax, 10)
    x = 0.0
    while x <= tmax:
        out.append(f'<line x1="{X(x):.1f}" y1="{T + ph}" x2="{X(x):.1f}" y2="{T + ph + 5}" stroke="black"/>')
        out.append(f'<text x="{X(x):.1f}" y="{T + ph + 18}" text-anchor="middle">{x:g}</text>')
        x += tstep
    out.append(f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="black"/>')
    out.append(f'<text x="{L + pw / 2}" y="{H - 10}" text-anchor="middle">seconds</text>')
    out.append(f'<text transform="translate(18 {T + ph / 2}) rotate(-90)" text-anchor="middle">RSS (MiB)</text>')
    out.append(f'<text transform="translate({W - 14} {T + ph / 2}) rotate(90)" text-anchor="middle" fill="#888">connected clients</text>')
    if a.warmup < tmax:
        out.append(f'<rect x="{L}" y="{T}" width="{X(a.warmup) - L:.1f}" height="{ph}" fill="#f4f4f4"/>')
        out.append(f'<text x="{X(a.warmup / 2):.1f}" y="{T + 14}" text-anchor="middle" fill="#777">warm-up</text>')
    if clients:
        pts = " ".join(f"{X(x):.1f},{YC(y):.1f}" for x, y in zip(t, clients))
        out.append(f'<polyline points="{pts}" fill="none" stroke="#bbb" stroke-width="1"/>')
    pts = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in zip(t, rss))
    out.append(f'<polyline points="{pts}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>')
    if after and b == b:
        x0, x1 = after[0][0], after[-1][0]
        out.append(
            f'<line x1="{X(x0):.1f}" y1="{Y(b * x0 + c):.1f}" x2="{X(x1):.1f}" y2="{Y(b * x1 + c):.1f}" stroke="#d62728" stroke-dasharray="6 4"/>'
        )
        out.append(
            f'<text x="{L + pw - 8}" y="{T + ph - 10}" text-anchor="end" fill="#d62728">after warm-up: {b * 3600:+.2f} MiB/hour (least squares)</text>'
        )
    out.append("</svg>")
    open(a.svg, "w").write("\n".join(out) + "\n")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
