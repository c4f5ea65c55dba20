"""The report of a ``reelops run``: one HTML file, self-contained.

Plots are PNG images embedded as ``data:`` URLs and the style sheet is inline: the page makes
no request of its own (no script, font or image from anywhere), so it opens the same from a
laptop's disk, an MLflow artifact view or a CI artifact. Every plot is a ``<figure
data-plot=NAME>``; one without data says why in the image itself and is marked
``data-empty="true"``.
"""

from __future__ import annotations

import base64
import html
import io
import time
from pathlib import Path

from reelops.lifecycle.loop import clock_text

PLOTS = ("quality", "stars", "drift", "traffic", "canary", "shadow")
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def write_report(record: dict, path) -> Path:
    """Render ``record`` (what :class:`reelops.lifecycle.loop.Lifecycle` collected) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(render(record), encoding="utf-8")
    partial.replace(path)  # a reader never sees half a page
    return path


def render(record: dict) -> str:
    """The whole page as a string."""
    facts = record.get("facts") or {}
    began = facts.get("began") or time.time()
    versions = {str(v["version"]): v for v in record.get("versions") or []}
    colours = {version: _COLOURS[i % len(_COLOURS)] for i, version in enumerate(sorted(versions, key=int))}
    sections = [
        _summary(record, facts),
        _section("Quality over time", "The model's error on the ratings users gave, in world time (the page views "
                 "replayed from a little before the onset): mean absolute error of the predicted rating per 250 page "
                 "views, by the version that answered. The dashed line is the world's true onset.",
                 _figure("quality", _plot_quality(record, facts, colours))),
        _section("What users thought of the recommendations", "Home-page traffic: the mean rating users gave to a "
                 "movie each version recommended (the world's oracle rates it), per 10 seconds.",
                 _figure("stars", _plot_stars(record, colours))),
        _section("Drift, window by window", "Each detector's combined p-value per window of 1,000 interactions "
                 "(calibrated: about 5% of unchanged windows fall below 0.05), at the world time the window ended; "
                 "filled markers are alarms (significant and material).",
                 _figure("drift", _plot_drift(record, facts)) + _retrain_text(record)),
        _section("Traffic split", "Requests answered per version, per 5 seconds of the run (failed ones in black), "
                 "with what happened when.", _figure("traffic", _plot_traffic(record, colours)) + _events(record, began)),
        _section("Canary analysis", "Always-valid intervals of how much worse the canary is than stable, as the "
                 "canary's requests grew; the analysis promotes once all three lie below their margin and rolls back "
                 "as soon as one lies above it.",
                 _figure("canary", _plot_canary(record)) + _canary_table(record)),
        _section("Shadow", "The challenger answered every request beside production, unseen by users: agreement@10 "
                 "and rank correlation per window of compared requests.",
                 _figure("shadow", _plot_shadow(record)) + _shadow_text(record)),
        _section("Gate decisions and lineage", "Every version in the registry: how it was trained, from what, by "
                 "which code, image and pipeline run, and what the gate decided.", _lineage(record, colours)),
        _section("Alias history", "Every move of production, canary and previous, with its reason.", _history(record)),
        _section("Batch scoring", "", _batch(record)),
        _section("Stages and their budgets", "", _stages(record)),
    ]
    title = f"reelops run: {facts.get('scenario', '?')} (seed {facts.get('seed', '?')})"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1100px;
       padding: 1.5rem; color: #222; line-height: 1.45; }}
h1 {{ margin-bottom: 0.2rem; }} h2 {{ margin-top: 2.2rem; border-bottom: 1px solid #ddd; }}
p.lead {{ color: #555; margin-top: 0; }}
table {{ border-collapse: collapse; margin: 0.6rem 0; font-size: 0.9rem; }}
th, td {{ border-bottom: 1px solid #e4e4e4; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }}
th {{ background: #f6f6f6; }} td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
figure {{ margin: 0.6rem 0; }} figure img {{ max-width: 100%; height: auto; }}
.ok {{ color: #17762b; font-weight: 600; }} .bad {{ color: #b3261e; font-weight: 600; }}
.muted {{ color: #777; }} code {{ font-size: 0.85rem; }}
</style></head>
<body>
<h1>{_e(title)}</h1>
<p class="lead">{_e(time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(began)))} &middot;
{_e(_duration(record.get('seconds')))} &middot; site <code>{_e(facts.get('site', ''))}</code></p>
{''.join(sections)}
</body></html>
"""


# ---------------------------------------------------------------------- text parts


def _summary(record: dict, facts: dict) -> str:
    items = []
    for stage in record.get("stages") or []:
        css = "ok" if stage["outcome"] == "done" else "bad"
        reused = f" <span class='muted'>(reused: {_e('; '.join(stage['reused']))})</span>" if stage.get("reused") else ""
        items.append(f"<li><b>{_e(stage['name'])}</b> <span class='{css}'>{_e(stage['outcome'])}</span>: "
                     f"{_e(stage['note'])}{reused}</li>")
    world = (f"A simulated movie site (scenario <code>{_e(facts.get('scenario'))}</code>, seed {_e(facts.get('seed'))}, "
             f"{facts.get('ratings', 0):,} ratings; the change begins after rating {facts.get('onset_index', 0):,}). "
             f"Traffic at {facts.get('rate', 0):g} requests/s through the local serving plane.")
    stages = f"<ol>{''.join(items)}</ol>" if items else "<p>No stage ran.</p>"
    return _section("What happened", "", f"<p class='lead'>{world}</p>{stages}")


def _section(title: str, lead: str, body: str) -> str:
    lead_html = f"<p class='lead'>{_e(lead)}</p>" if lead else ""
    return f"<section><h2>{_e(title)}</h2>{lead_html}{body}</section>\n"


def _table(headers: list, rows: list, numeric: set | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td class='num'>{_e(_fmt(c))}</td>" if i in numeric else f"<td>{_e(_fmt(c))}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _retrain_text(record: dict) -> str:
    decision = (record.get("retrain") or {}).get("decision")
    trigger = (record.get("retrain") or {}).get("trigger")
    if not decision:
        return "<p>The detector did not decide to retrain.</p>"
    reasons = "".join(f"<li>{_e(r)}</li>" for r in decision.get("reasons") or [])
    run = ""
    if trigger:
        run = (f"<p>Trigger claim <code>{_e(trigger.get('claim'))}</code>: the training run "
               f"<code>{_e(trigger.get('run_id'))}</code> ended with exit code {_e(trigger.get('exit_code'))}.</p>")
    return f"<p>Retrain decided after window {_e(decision.get('window'))}:</p><ul>{reasons}</ul>{run}"


def _events(record: dict, began: float) -> str:
    rows = [[_duration(e["time"] - began), e["label"]] for e in record.get("events") or []]
    return _table(["at", "what happened"], rows) if rows else ""


def _canary_table(record: dict) -> str:
    decision = (record.get("canary") or {}).get("decision")
    if not decision:
        return "<p>No canary analysis ran.</p>"
    rows = [[c.get("metric"), c.get("worse_by"),
             f"[{_fmt((c.get('interval') or [None, None])[0])}, {_fmt((c.get('interval') or [None, None])[1])}]",
             c.get("margin"), "/".join(str(n) for n in c.get("n") or []) or "-", c.get("state")]
            for c in decision.get("comparisons") or []]
    css = "ok" if decision.get("decision") == "promote" else "bad"
    return (f"<p>Version {_e(decision.get('version'))}: <span class='{css}'>{_e(decision.get('decision'))}</span> after "
            f"{_fmt(decision.get('canary_requests'))} canary requests in {_fmt(decision.get('seconds'))} s "
            f"({_e(decision.get('canary'))} against {_e(decision.get('stable'))}). {_e(decision.get('reason'))}</p>"
            + _table(["comparison", "worse by", "always-valid interval", "margin", "n canary/stable", "state"], rows,
                     {1, 3}))


def _shadow_text(record: dict) -> str:
    shadow = record.get("shadow") or {}
    report = shadow.get("report") or {}
    windows = report.get("windows") or []
    if not windows:
        return "<p>No shadow window was compared.</p>"
    rows = [[w.get("window"), w.get("requests"), w.get("agreement"), w.get("rank_correlation"),
             w.get("score_difference"), w.get("primary_p50_ms"), w.get("shadow_p50_ms")] for w in windows]
    dropped = report.get("dropped") or {}
    return (f"<p>Challenger version {_e(shadow.get('version'))} against production; compared "
            f"{_fmt(report.get('compared'))} requests, dropped {_e(dropped or 'none')}, shadow errors "
            f"{_fmt(report.get('shadow_errors', 0))}.</p>"
            + _table(["window", "compared", "agreement@10", "rank correlation", "score difference", "primary p50 ms",
                      "shadow p50 ms"], rows, {0, 1, 2, 3, 4, 5, 6}))


def _lineage(record: dict, colours: dict) -> str:
    rows = []
    for v in record.get("versions") or []:
        rows.append([v["version"], v.get("algorithm"), ", ".join(v.get("aliases") or []) or "-",
                     v.get("gate_decision"), v.get("gate_compared_with") or "-", v.get("rmse"), v.get("ndcg_at_10"),
                     v.get("dataset_version"), v.get("dataset_source"), (v.get("git_commit") or "")[:10], v.get("image"),
                     v.get("kfp_run_id") or "-"])
    if not rows:
        return "<p>No version was registered.</p>"
    return _table(["version", "algorithm", "aliases", "gate", "compared with", "RMSE", "NDCG@10", "dataset",
                   "data source", "commit", "image", "pipeline run"], rows, {5, 6})


def _history(record: dict) -> str:
    rows = [[h.get("time"), h.get("alias"), h.get("from") or "-", h.get("to") or "-", h.get("reason")]
            for h in record.get("history") or []]
    return _table(["time", "alias", "from", "to", "reason"], rows) if rows else "<p>No alias moved.</p>"


def _batch(record: dict) -> str:
    batch = record.get("batch")
    if not batch:
        return "<p>Batch scoring did not run.</p>"
    sample = "".join(f"<li>user {s['user_id']}: {_e('; '.join(s['titles']))}</li>" for s in batch.get("sample") or [])
    return (f"<p>{batch['rows']:,} recommendations for {batch['users']:,} users by version "
            f"{_e(batch.get('model_version'))} in <code>{_e(batch['table'])}</code>. The first users' top 5:</p>"
            f"<ul>{sample}</ul>")


def _stages(record: dict) -> str:
    rows = [[s["name"], _duration(s["budget"]), _duration(s["seconds"]), s["outcome"], s["note"]]
            for s in record.get("stages") or []]
    return _table(["stage", "budget", "took", "outcome", "note"], rows)


# ---------------------------------------------------------------------- plots


def _figure(name: str, drawn: tuple) -> str:
    png, empty = drawn
    data = base64.b64encode(png).decode("ascii")
    return (f"<figure data-plot='{name}' data-empty='{str(empty).lower()}'>"
            f"<img alt='{_e(name)} plot' width='900' height='300' src='data:image/png;base64,{data}'></figure>")


def _axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 3), dpi=100)
    return plt, figure, axes


def _png(plt, figure) -> bytes:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def _empty(plt, figure, axes, why: str) -> tuple:
    axes.axis("off")
    axes.text(0.5, 0.5, f"no data: {why}", ha="center", va="center", fontsize=12, color="#777")
    return _png(plt, figure), True


def _world_dates(values):
    import datetime

    return [datetime.datetime.fromtimestamp(v, datetime.timezone.utc) for v in values]


def _mark_onset(axes, facts: dict) -> None:
    if facts.get("onset"):
        axes.axvline(_world_dates([facts["onset"]])[0], color="#444", linestyle="--", linewidth=1)
        axes.text(_world_dates([facts["onset"]])[0], axes.get_ylim()[1], " onset", va="top", fontsize=9, color="#444")


def _lines_by_version(axes, series: list, colours: dict, x_of, y_key: str) -> None:
    """One line per version of a series of points (each with ``version``), in its colour."""
    for version in sorted({p["version"] for p in series}):
        points = [p for p in series if p["version"] == version]
        axes.plot(x_of(points), [p[y_key] for p in points], marker="o", markersize=3, linewidth=1.2,
                  label=f"version {version}", color=colours.get(version, "#555"))


def _plot_quality(record: dict, facts: dict, colours: dict) -> tuple:
    plt, figure, axes = _axes()
    series = record.get("quality") or []
    if not series:
        return _empty(plt, figure, axes, "no page views were answered")
    _lines_by_version(axes, series, colours, lambda points: _world_dates([p["world_time"] for p in points]), "mae")
    axes.set_ylabel("mean absolute error (stars)")
    axes.set_xlabel("world time")
    _mark_onset(axes, facts)
    axes.legend(loc="upper left", fontsize=8)
    figure.autofmt_xdate()
    return _png(plt, figure), False


def _plot_stars(record: dict, colours: dict) -> tuple:
    plt, figure, axes = _axes()
    series = record.get("stars") or []
    if not series:
        return _empty(plt, figure, axes, "no home-page traffic ran")
    _lines_by_version(axes, series, colours, lambda points: [p["t"] for p in points], "stars")
    axes.set_ylabel("mean rating (stars)")
    axes.set_xlabel("seconds since the run began")
    axes.legend(loc="lower left", fontsize=8)
    return _png(plt, figure), False


def _plot_drift(record: dict, facts: dict) -> tuple:
    plt, figure, axes = _axes()
    windows = [(version, w) for version, ws in (record.get("detector_windows") or {}).items() for w in ws
               if w.get("end_timestamp")]
    if not windows:
        return _empty(plt, figure, axes, "no detector window was judged")
    names = sorted({name for _, w in windows for name in w["detectors"]})
    for index, name in enumerate(names):
        points = [(w["end_timestamp"], w["detectors"][name]["p_value"], w["detectors"][name]["drift"])
                  for _, w in windows if name in w["detectors"] and w["detectors"][name].get("p_value") is not None]
        if not points:
            continue
        colour = _COLOURS[index % len(_COLOURS)]
        dates = _world_dates([p[0] for p in points])
        values = [max(p[1], 1e-12) for p in points]
        axes.plot(dates, values, linewidth=1, color=colour, label=name)
        alarms = [(d, v) for d, v, p in zip(dates, values, points) if p[2]]
        if alarms:
            axes.scatter([a[0] for a in alarms], [a[1] for a in alarms], color=colour, s=30, zorder=3)
    axes.set_yscale("log")
    axes.axhline(0.05, color="#999", linewidth=0.8)
    axes.set_ylabel("p-value (log)")
    axes.set_xlabel("world time at the end of the window")
    _mark_onset(axes, facts)
    axes.legend(loc="lower left", fontsize=7, ncol=3)
    figure.autofmt_xdate()
    return _png(plt, figure), False


def _plot_traffic(record: dict, colours: dict) -> tuple:
    plt, figure, axes = _axes()
    series = record.get("traffic") or []
    if not series:
        return _empty(plt, figure, axes, "no request was sent")
    times = [p["t"] for p in series]
    versions = sorted({v for p in series for v in p["answered"]}, key=lambda v: (not v.isdigit(), v))
    stacks = [[p["answered"].get(v, 0) for p in series] for v in versions]
    axes.stackplot(times, *stacks, labels=[f"version {v}" for v in versions],
                   colors=[colours.get(v, "#999") for v in versions], step="post", alpha=0.85)
    failed = [p["failed"] for p in series]
    if any(failed):
        axes.plot(times, failed, color="black", linewidth=1, label="failed")
    axes.set_ylabel("requests per 5 s")
    axes.set_xlabel("seconds since the run began")
    axes.legend(loc="upper left", fontsize=8)
    return _png(plt, figure), False


def _plot_canary(record: dict) -> tuple:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    verdicts = (record.get("canary") or {}).get("verdicts") or []
    names = ("quality", "errors", "latency")
    figure, panels = plt.subplots(1, 3, figsize=(9, 3), dpi=100)
    if not verdicts:
        for panel in panels[1:]:
            panel.axis("off")
        return _empty(plt, figure, panels[0], "no canary analysis ran")
    for panel, name, colour in zip(panels, names, _COLOURS):
        points = [(v["canary_requests"], c) for v in verdicts for c in v["comparisons"]
                  if c["metric"] == name and c.get("interval")]
        panel.set_title(name, fontsize=10)
        panel.set_xlabel("canary requests", fontsize=8)
        panel.tick_params(labelsize=7)
        if not points:
            panel.text(0.5, 0.5, "waiting for data", ha="center", va="center", transform=panel.transAxes, color="#777")
            continue
        x = [p[0] for p in points]
        panel.fill_between(x, [p[1]["interval"][0] for p in points], [p[1]["interval"][1] for p in points],
                           color=colour, alpha=0.25, step="post")
        panel.plot(x, [p[1]["worse_by"] for p in points], color=colour, drawstyle="steps-post")
        panel.axhline(points[-1][1]["margin"], color="#b3261e", linestyle="--", linewidth=1)
        low = min(p[1]["interval"][0] for p in points[len(points) // 3:])
        high = max(p[1]["interval"][1] for p in points[len(points) // 3:])
        margin = points[-1][1]["margin"]
        panel.set_ylim(min(low, margin) - 0.1 * abs(high - low), max(high, margin) + 0.1 * abs(high - low) + 1e-9)
    panels[0].set_ylabel("canary worse by (dashed: margin)", fontsize=8)
    return _png(plt, figure), False


def _plot_shadow(record: dict) -> tuple:
    plt, figure, axes = _axes()
    windows = ((record.get("shadow") or {}).get("report") or {}).get("windows") or []
    if not windows:
        return _empty(plt, figure, axes, "no shadow window was compared")
    x = [w["window"] for w in windows]
    axes.plot(x, [w.get("agreement") for w in windows], marker="o", label="agreement@10")
    axes.plot(x, [w.get("rank_correlation") for w in windows], marker="s", label="rank correlation")
    axes.set_ylim(-1.05, 1.05)
    axes.set_xlabel("window of compared requests")
    axes.legend(loc="lower right", fontsize=8)
    return _png(plt, figure), False


# ---------------------------------------------------------------------- formatting


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _duration(seconds) -> str:
    return "-" if seconds is None else clock_text(float(seconds))
