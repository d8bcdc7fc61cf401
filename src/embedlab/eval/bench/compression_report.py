"""Reporting for the compression benchmark: headline figures, the table, a Pareto PNG and an HTML page."""

from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np

from embedlab.eval.bench.compression import CompressionResult, Row

COLUMNS = ["method", "codec", "fit on", "rescore", "RAM B/vec", "x smaller", "disk B/vec", "nDCG@10", "retention",
           "recall@10 vs f32", "QPS", "fit s"]


def table(result: CompressionResult) -> tuple[list[str], list[list]]:
    """``(columns, rows)``: one row per measured configuration, in run order."""
    full = 4 * result.dim
    rows = [[r.method, r.codec, r.fit_on, r.rescore, int(r.ram_bytes), round(full / r.ram_bytes, 1), int(r.disk_bytes),
             round(r.ndcg10, 4), round(r.retention, 4), round(r.recall10, 4), round(r.qps, 1), round(r.fit_s, 2)]
            for r in result.rows]
    return COLUMNS, rows


def _ours(result: CompressionResult, codec: str, rescore: str = "none") -> Row | None:
    return result.row("embedlab", codec, rescore)


def _best_pq(result: CompressionResult, strict: bool) -> Row | None:
    rows = [r for r in result.rows if r.method == "embedlab" and r.rescore == "none" and 48 <= r.ram_bytes <= 64
            and r.codec.split(":")[0] in ("pq", "opq") and (r.fit_on == "calibration sample") == strict]
    return max(rows, key=lambda r: r.retention, default=None)


def figures(result: CompressionResult) -> dict:
    """Headline figures (retentions as fractions of float32 nDCG@10); ``None`` when not measured."""
    def ret(row: Row | None):
        return None if row is None else round(row.retention, 4)

    binary = _ours(result, "binary")
    binary_rescore = _ours(result, "binary", f"float32 x{result.oversample}")
    best_pq = _best_pq(result, strict=False) or _best_pq(result, strict=True)
    strict_pq = _best_pq(result, strict=True)
    st = {r.codec + "|" + r.rescore: r for r in result.rows if r.method == "sentence-transformers"}
    st_int8 = next((r for k, r in st.items() if k.startswith("int8 (corpus ranges") and r.rescore == "none"), None)
    st_bin = next((r for k, r in st.items() if k.startswith("binary|none")), None)
    st_bin_rs = next((r for k, r in st.items() if k.startswith("binary|") and r.rescore != "none"), None)
    return {
        "float32_ndcg10": round(result.baseline_ndcg10, 4),
        "int8_retention": ret(_ours(result, "int8")),
        "int8_percentile_retention": ret(_ours(result, "int8:calibration=percentile")),
        "binary_retention": ret(binary),
        "binary_rescore_retention": ret(binary_rescore),
        "binary_rescore_retention_by_oversample": {
            r.rescore.split(" x")[1]: round(r.retention, 4) for r in result.rows
            if r.method == "embedlab" and r.codec == "binary" and r.rescore.startswith("float32 x")} or None,
        "binary_float_query_retention": ret(_ours(result, "binary:query=float")),
        "binary_float_query_rescore_retention": ret(_ours(result, "binary:query=float", f"float32 x{result.oversample}")),
        "binary_ram_bytes_per_vector": None if binary is None else int(binary.ram_bytes),
        "binary_ram_reduction": None if binary is None else round(4 * result.dim / binary.ram_bytes, 1),
        "pq_retention": ret(best_pq),
        "pq_bytes_per_vector": None if best_pq is None else int(best_pq.ram_bytes),
        "pq_codec": None if best_pq is None else f"{best_pq.codec} (fit on {best_pq.fit_on})",
        "pq_retention_fit_on_calibration_sample": ret(strict_pq),
        "pq_codec_fit_on_calibration_sample": None if strict_pq is None else strict_pq.codec,
        "truncate_128_retention": ret(_ours(result, "truncate:128")),
        "truncate_256_retention": ret(_ours(result, "truncate:256")),
        "st_int8_retention": ret(st_int8),
        "st_binary_retention": ret(st_bin),
        "st_binary_rescore_retention": ret(st_bin_rs),
        "oversample": result.oversample,
        "calibration_sample": result.fit_source,
    }


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated (fewer bytes and higher quality), sorted by bytes."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def write_png(result: CompressionResult, path: str | os.PathLike, title: str) -> Path:
    """Retention of float32 nDCG@10 vs RAM bytes per vector (log x), our rows and the peer's; Pareto front."""
    from matplotlib.figure import Figure  # no pyplot: no process-wide backend or figure registry

    fig = Figure(figsize=(9, 5.5), dpi=110)
    ax = fig.subplots()
    styles = {("embedlab", False): ("o", "tab:blue", "embedlab, codes only"),
              ("embedlab", True): ("s", "tab:orange", "embedlab + rescoring"),
              ("sentence-transformers", False): ("x", "tab:gray", "sentence-transformers"),
              ("sentence-transformers", True): ("+", "tab:gray", "sentence-transformers + rescore")}
    seen = set()
    for r in result.rows:
        key = (r.method, r.rescore != "none")
        marker, color, label = styles[key]
        ax.scatter(r.ram_bytes, r.retention, marker=marker, color=color, label=None if key in seen else label, zorder=3)
        seen.add(key)
        if r.method == "embedlab" and r.rescore in ("none", f"float32 x{result.oversample}"):
            ax.annotate(r.codec, (r.ram_bytes, r.retention), fontsize=6, xytext=(3, 2), textcoords="offset points")
    ours = [r for r in result.rows if r.method == "embedlab"]
    front = [ours[i] for i in pareto_front([(r.ram_bytes, r.retention) for r in ours])]
    ax.plot([r.ram_bytes for r in front], [r.retention for r in front], "--", color="tab:green", lw=1, label="Pareto front")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("RAM bytes per vector (log scale)")
    ax.set_ylabel("nDCG@10 retention vs float32")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def write_html(result: CompressionResult, path: str | os.PathLike, *, title: str, png: str | None,
               meta: dict, notes: list[str]) -> Path:
    """A self-contained HTML report (the PNG is linked by relative path)."""
    columns, rows = table(result)
    esc = html.escape
    parts = [f"<!doctype html><meta charset='utf-8'><title>{esc(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:right;border-bottom:1px solid #ddd}"
             "th{background:#f4f4f4}td:nth-child(-n+3){text-align:left}</style>",
             f"<h1>{esc(title)}</h1><ul>"]
    parts += [f"<li><b>{esc(str(k))}</b>: {esc(str(v))}</li>" for k, v in meta.items()]
    parts.append("</ul>")
    if png:
        parts.append(f"<img src='{esc(png)}' style='max-width:100%'>")
    parts.append("<h2>Headline figures</h2><table>")
    parts += [f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in figures(result).items()]
    parts.append("</table><h2>All configurations</h2><table><tr>" + "".join(f"<th>{esc(c)}</th>" for c in columns) + "</tr>")
    parts += ["<tr>" + "".join(f"<td>{esc(str(v))}</td>" for v in row) + "</tr>" for row in rows]
    parts.append("</table>")
    if result.skipped:
        parts.append("<h2>Skipped</h2><ul>" + "".join(f"<li>{esc(s)}</li>" for s in result.skipped) + "</ul>")
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path


def goal_notes(result: CompressionResult) -> list[str]:
    """One sentence per goal of the issue: reached, or the number reached and why not."""
    f = figures(result)
    notes = [f"Scalar codecs (int8, int4) are calibrated on {result.fit_source}, never on the corpus vectors they quantise; rescoring reads "
             f"the top {result.oversample}x{10} candidates' rows from a memory-mapped .npy on disk. QPS: one batch of "
             f"queries, {result.threads} thread(s), on a shared machine (±2x)."]

    def goal(name, value, target, what):
        if value is None:
            notes.append(f"{what}: not measured.")
        elif value >= target:
            notes.append(f"{what}: goal >= {target:.0%} reached ({value:.2%}).")
        else:
            notes.append(f"{what}: goal >= {target:.0%} NOT reached: measured {value:.2%}.")

    goal("int8", f["int8_retention"], 0.99, "int8 retention (no rescoring)")
    goal("binary", f["binary_rescore_retention"], 0.96,
         f"binary + float32 rescoring (x{result.oversample}) at {f['binary_ram_reduction']}x fewer RAM bytes")
    goal("pq", f["pq_retention"], 0.95, f"PQ at 48-64 bytes ({f['pq_codec']}, codes only)")
    if f["pq_retention_fit_on_calibration_sample"] is not None and f["pq_codec"] and "corpus sample" in f["pq_codec"]:
        notes.append(f"PQ codebooks follow faiss's protocol (trained on a seeded sample of the corpus they code); "
                     f"trained on the calibration sample instead, the best 48-64-byte PQ "
                     f"({f['pq_codec_fit_on_calibration_sample']}) retains {f['pq_retention_fit_on_calibration_sample']:.2%}.")
    for mine, theirs, what in (("int8_retention", "st_int8_retention", "int8"),
                               ("binary_retention", "st_binary_retention", "binary (codes only)")):
        if f[mine] is not None and f[theirs] is not None:
            cmp = "equal or better" if f[mine] >= f[theirs] - 1e-4 else "WORSE"
            notes.append(f"{what} vs sentence-transformers on the same vectors: ours {f[mine]:.2%}, theirs "
                         f"{f[theirs]:.2%} ({cmp}).")
    return notes


def write_all(result: CompressionResult, out_dir: str | os.PathLike, *, name: str, title: str, meta: dict) -> dict:
    """Write ``<name>.png`` and ``<name>.html`` into ``out_dir``; return ``{"png", "html", "notes"}``."""
    out_dir = Path(out_dir)
    notes = goal_notes(result)
    png = write_png(result, out_dir / f"{name}.png", title)
    page = write_html(result, out_dir / f"{name}.html", title=title, png=png.name, meta=meta, notes=notes)
    return {"png": str(png), "html": str(page), "notes": notes}
