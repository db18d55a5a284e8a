"""Pictures: one self-contained HTML page (every script inline: it loads nothing when viewed), the
tables beside it as CSV and Parquet, and PNG versions of the charts for the README.

The charts: coverage of the elderly care subsidy against the plan's target by city and year; the
annual cost by program and year; the distribution of monthly gains and losses of a comparison.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import altair as alt
import polars as pl
import vl_convert as vlc
from altair.utils._importers import vl_version_for_vl_convert

from service.engine.columnar import schema as s

from .report import PROGRAM, PROVINCE, Figure, write_tables

CJK_FONTS = Path("/usr/share/fonts/opentype/noto")  # Debian's fonts-noto-cjk: Chinese labels in PNGs
FONT = "Noto Sans CJK SC"
_fonts_registered = False


def _register_fonts() -> None:
    global _fonts_registered
    if not _fonts_registered and CJK_FONTS.is_dir():
        vlc.register_font_directory(str(CJK_FONTS))
        _fonts_registered = True


def _names(regions: dict[str, str], codes: pl.Series) -> pl.Series:
    return codes.replace_strict(regions, default=codes)


def coverage_chart(cov: pl.DataFrame, plan: list[Figure], regions: dict[str, str]) -> alt.TopLevelMixin:
    data = cov.with_columns(_names(regions, cov[s.CITY]).alias("city")).select("year", "city", "coverage")
    targets = pl.DataFrame(
        [
            {"year": f.year, "target": f.value, "label": f"{f.year} {f.kind} {f.value:.1%}"}
            for f in plan
            if f.measure == "coverage"
        ],
        schema={"year": pl.Int32, "target": pl.Float64, "label": pl.String},
    )
    province = regions.get(PROVINCE, PROVINCE)
    lines = (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X("year:O", title="年份 year", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("coverage:Q", title="养老服务补贴覆盖率 coverage of people 60+", axis=alt.Axis(format="%")),
            color=alt.Color(
                "city:N", title="城市 city", legend=alt.Legend(labelLimit=400), scale=alt.Scale(scheme="tableau20")
            ),
            # the province, which the target is set for, drawn heavier than its cities
            strokeWidth=alt.condition(alt.datum.city == province, alt.value(4), alt.value(1.5)),
            tooltip=["year:O", "city:N", alt.Tooltip("coverage:Q", format=".2%")],
        )
    )
    rules = alt.Chart(targets).mark_rule(strokeDash=[6, 3], color="firebrick").encode(y="target:Q")
    labels = (
        alt.Chart(targets).mark_text(align="left", dx=4, dy=-6, color="firebrick").encode(y="target:Q", text="label:N")
    )
    return alt.layer(lines, rules, labels).properties(
        title="养老服务补贴覆盖率与规划目标 Elderly care subsidy coverage against the plan's target",
        width=560,
        height=320,
    )


def coverage_by_city_chart(cov: pl.DataFrame, plan: list[Figure], regions: dict[str, str]) -> alt.TopLevelMixin:
    """The last year's coverage per city (and the province) against the plan's target."""
    year = int(cov["year"].max())  # type: ignore[arg-type]  # a year column: an int
    last = cov.filter(pl.col("year") == year)
    data = last.with_columns(_names(regions, last[s.CITY]).alias("city")).select("year", "city", "coverage")
    targets = [f for f in plan if f.measure == "coverage" and f.kind == "target"]
    goal = pl.DataFrame(
        {"target": [f.value for f in targets], "label": [f"{f.year} target {f.value:.1%}" for f in targets]},
        schema={"target": pl.Float64, "label": pl.String},
    )
    bars = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("city:N", title="城市 city", sort="-x"),
            x=alt.X("coverage:Q", title=f"{year} 覆盖率 coverage of people 60+", axis=alt.Axis(format="%")),
            color=alt.condition(
                alt.datum.city == regions.get(PROVINCE, PROVINCE), alt.value("#333333"), alt.value("#4c78a8")
            ),
            tooltip=["city:N", alt.Tooltip("coverage:Q", format=".2%")],
        )
    )
    rule = alt.Chart(goal).mark_rule(strokeDash=[6, 3], color="firebrick", size=2).encode(x="target:Q")
    text = (
        alt.Chart(goal)
        .mark_text(align="left", dx=4, dy=-4, color="firebrick", baseline="bottom")
        .encode(x="target:Q", text="label:N", y=alt.value(0))
    )
    return alt.layer(bars, rule, text).properties(
        title=f"{year} 各市养老服务补贴覆盖率与目标 Coverage by city against the target", width=560, height=320
    )


def cost_chart(table: pl.DataFrame, names: dict[str, str]) -> alt.TopLevelMixin:
    data = (
        table.filter(pl.col(s.CITY) == PROVINCE)
        .with_columns(
            _names(names, table.filter(pl.col(s.CITY) == PROVINCE)[PROGRAM]).alias("program_name"),
            (pl.col("annual_cost_fen") / 100 / 1_000_000).alias("million_yuan"),
        )
        .select("year", "program_name", "million_yuan", "annual_basis")
    )
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("year:O", title="年份 year", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("million_yuan:Q", title="年度支出（百万元）annual cost, million yuan"),
            color=alt.Color("program_name:N", title="项目 program", legend=alt.Legend(labelLimit=400)),
            tooltip=["year:O", "program_name:N", alt.Tooltip("million_yuan:Q", format=",.2f"), "annual_basis:N"],
        )
        .properties(title="各项目年度支出 Annual cost by program (province)", width=560, height=320)
    )


def change_chart(dist: pl.DataFrame, names: dict[str, str]) -> alt.TopLevelMixin:
    data = dist.with_columns(
        _names(names, dist[PROGRAM]).alias("program_name"), (pl.col("change_fen") / 100).alias("change_yuan")
    ).select("program_name", "change_yuan", "people")
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("change_yuan:Q", title="每月变化（元）monthly change, yuan", bin=alt.Bin(maxbins=40)),
            y=alt.Y("sum(people):Q", title="人数 people"),
            color=alt.Color("program_name:N", title="项目 program", legend=alt.Legend(labelLimit=400)),
            tooltip=["program_name:N", alt.Tooltip("sum(people):Q", format=",")],
        )
        .properties(title="增减分布 Distribution of monthly gains and losses", width=560, height=320)
    )


_PAGE = """<!DOCTYPE html>
<html lang="zh">
<head>
<meta charset="UTF-8">
<title>{title}</title>
<style>
body {{ font-family: "{font}", sans-serif; margin: 2em; max-width: 70em; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin-bottom: 2em; }}
td, th {{ border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }}
th {{ background: #f4f4f4; }}
.chart {{ margin: 1.5em 0; }}
</style>
<script type="text/javascript">{bundle}</script>
</head>
<body>
<h1>{title}</h1>
{body}
<script type="text/javascript">
const specs = {specs};
for (const [id, spec] of Object.entries(specs)) {{
  vegaEmbed("#" + id, spec, {{renderer: "svg", actions: false}}).catch(console.error);
}}
</script>
</body>
</html>
"""


def _table_html(table: pl.DataFrame, limit: int = 200) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row) + "</tr>"
        for row in table.head(limit).iter_rows()
    )
    more = f"<p>({table.height - limit} more rows in the CSV)</p>" if table.height > limit else ""
    return f"<table><tr>{head}</tr>{rows}</table>{more}"


def remote_references(page: str) -> list[str]:
    """Any element that would load something over the network: script src, link href, img src."""
    return re.findall(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//[^\"'\s>]*", page)


def write_report(
    out: Path,
    title: str,
    charts: Mapping[str, alt.TopLevelMixin],
    tables: dict[str, pl.DataFrame],
    findings: list[str],
    png: Path | None = None,
) -> Path:
    """report.html (self-contained) and each table as CSV and Parquet in `out`; each chart as
    NAME.png in `png` when given."""
    out.mkdir(parents=True, exist_ok=True)
    write_tables(out, tables)
    specs: dict[str, Any] = {name: chart.to_dict() for name, chart in charts.items()}
    for spec in specs.values():
        spec.setdefault("config", {}).update({"font": FONT})
    body = []
    if findings:
        body.append("<h2>发现 Findings</h2><ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in findings) + "</ul>")
    body += [f'<div class="chart" id="{name}"></div>' for name in specs]
    for name, table in tables.items():
        body.append(f"<h2>{html.escape(name)}</h2><p>{name}.csv, {name}.parquet</p>{_table_html(table)}")
    # Vega, Vega-Lite and vega-embed, inline: the one script the page runs besides its own
    bundle = vlc.javascript_bundle(None, vl_version=vl_version_for_vl_convert())  # type: ignore[arg-type]  # the stub says str; None is the default snippet
    page = _PAGE.format(
        title=html.escape(title),
        font=FONT,
        bundle=bundle,
        body="\n".join(body),
        specs=json.dumps(specs, default=str).replace("</", "<\\/"),
    )
    remote = remote_references(page)
    if remote:
        raise RuntimeError(f"the report would load from the network: {remote[:3]}")
    target = out / "report.html"
    target.write_text(page, encoding="utf-8")
    if png is not None:
        _register_fonts()
        png.mkdir(parents=True, exist_ok=True)
        for name, spec in specs.items():
            (png / f"{name}.png").write_bytes(vlc.vegalite_to_png(spec, scale=2))
    return target
