"""A printable decision receipt: one self-contained HTML page in Chinese (or English), printed to PDF
by headless Chromium when a PDF is asked for.

It carries the person's reference only as a masked ID number (330102********0012), the decisions
and the rules behind them with their citations, every parameter value read, the policy version,
the request hash and the time it was printed.
"""

from __future__ import annotations

import datetime as dt
import html
import shutil
import subprocess
import tempfile
from pathlib import Path
from zoneinfo import ZoneInfo

from clients import explain
from clients.facts import fen_to_yuan, parameter_label, unit_label
from clients.texts import TEXT, ClientError, ExitCode
from service.api import eligibility_pb2 as pb

TITLE = {"zh": "社会福利补贴资格评估回执", "en": "Subsidy eligibility decision receipt"}
WORDS = {
    "zh": {"person": "申请人", "id": "身份证号", "printed": "打印时间", "parameters": "所用参数", "region": "地区"},
    "en": {
        "person": "Applicant",
        "id": "ID number",
        "printed": "Printed",
        "parameters": "Parameters used",
        "region": "Region",
    },
}
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
# A fresh profile and nothing in the background: the browser only lays out local files.
HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
CHROMIUM_FLAGS = (*HEADLESS_FLAGS, "--no-pdf-header-footer")

STYLE = """
@page { size: A4; margin: 16mm 14mm; }
body { font-family: "Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "Microsoft YaHei", sans-serif;
       font-size: 10.5pt; color: #000; margin: 0 auto; max-width: 182mm; line-height: 1.5; }
h1 { font-size: 16pt; text-align: center; margin: 0 0 4mm; }
h2 { font-size: 12pt; margin: 5mm 0 2mm; border-bottom: 1px solid #000; }
h3 { font-size: 11pt; margin: 3mm 0 1mm; }
table { width: 100%; border-collapse: collapse; margin-bottom: 2mm; }
th, td { border: 1px solid #666; padding: 1mm 2mm; text-align: left; vertical-align: top; }
th { background: #eee; }
td.num { text-align: right; white-space: nowrap; }
td.word { white-space: nowrap; }
.meta td { border: none; padding: 0.5mm 2mm 0.5mm 0; }
.paid { font-weight: bold; }
ul { margin: 1mm 0; padding-left: 6mm; }
footer { margin-top: 6mm; font-size: 9pt; border-top: 1px solid #000; padding-top: 2mm; }
tr, li { page-break-inside: avoid; }
@media print { th { background: #eee !important; -webkit-print-color-adjust: exact; print-color-adjust: exact; } }
"""


def mask_id(number: str) -> str:
    """The first six (the region) and last four characters; the birth date and sequence are hidden."""
    number = number.strip()
    return number[:6] + "*" * (len(number) - 10) + number[-4:] if len(number) > 10 else "*" * len(number)


def _e(text: object) -> str:
    return html.escape(str(text))


def _rows(cells: list[list[str]], head: list[str]) -> str:
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(cell for cell in row) + "</tr>" for row in cells)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _list(title: str, items: list[str]) -> str:
    if not items:
        return ""
    return f"<h2>{_e(title)}</h2><ul>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>"


def render_html(reply: pb.EvaluateResponse, id_number: str, lang: str, printed: dt.datetime | None = None) -> str:
    t, w = TEXT[lang], WORDS[lang]
    printed = printed or dt.datetime.now(ZoneInfo("Asia/Shanghai"))
    names = explain.names_of(reply, lang)
    decisions = explain.leading_first(list(reply.decisions))
    meta = [
        (w["id"], mask_id(id_number)),
        (t["region"], f"{explain.in_lang(reply.region, 'name', lang)}（{reply.region.code}）"),
        (t["date"], reply.evaluation_date),
    ]
    parts = [
        f"<h1>{_e(TITLE[lang])}</h1>",
        '<table class="meta">' + "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in meta) + "</table>",
        f"<h2>{_e(t['decision'])}</h2>",
    ]
    summary = []
    for d in decisions:
        paid = ' class="paid"' if d.monthly_amount.fen else ""
        reasons = "；".join(explain.deciding_reasons(d, lang, names))
        summary.append(
            [
                f"<td{paid}>{_e(names[d.program_id])}</td>",
                f'<td class="word">{_e(explain.outcome_text(d, lang))}</td>',
                f'<td class="num">{_e(fen_to_yuan(d.monthly_amount.fen, True))}</td>',
                f"<td>{_e(reasons)}</td>",
            ]
        )
    summary.append(
        [
            f"<td><b>{_e(t['total'])}</b></td>",
            "<td></td>",
            f'<td class="num"><b>{_e(fen_to_yuan(reply.total_monthly_amount.fen, True))}</b></td>',
            "<td></td>",
        ]
    )
    parts.append(_rows(summary, [t["program"], t["decision"], t["amount"], t["reason"]]))
    parts.append(_list(t["undetermined"], [m.text(lang) for m in explain.missing_facts(reply, lang)]))
    parts.append(_list(t["caveats"], [*explain.assumptions(reply, lang), *explain.caveats(reply, lang)]))
    parts.append(
        _list(
            t["referrals"],
            [f"{explain.referral_text(r, lang)}（{explain.citation(r, lang)}）" for r in reply.referrals],
        )
    )
    parts.append(f"<h2>{_e(t['reason'])}</h2>")
    for d in decisions:
        parts.append(f"<h3>{_e(names[d.program_id])}：{_e(explain.outcome_text(d, lang))}</h3>")
        rows = [
            [
                f'<td class="word">{_e(explain.rule_mark(r, lang))}</td>',
                f"<td>{_e(explain.in_lang(r, 'text', lang))}</td>",
                f"<td>{_e(explain.citation(r, lang))}</td>",
            ]
            for r in d.reasons
        ]
        rows += [
            [
                f"<td>{_e(t['interaction'])}</td>",
                f"<td>{_e(explain.in_lang(i, 'text', lang))}</td>",
                f"<td>{_e(explain.citation(i, lang))}</td>",
            ]
            for i in d.interactions
        ]
        parts.append(_rows(rows, ["", t["reason"], t["citation"]]))
    parameters = [
        [
            f"<td>{_e(parameter_label(p.parameter, lang))}</td>",
            f'<td class="num">{_e(p.value)}</td>',
            f"<td>{_e(unit_label(p.unit, lang))}</td>",
            f"<td>{_e(p.region_code)}</td>",
            f"<td>{_e(p.effective_from)}</td>",
            f"<td>{_e(p.source)}</td>",
        ]
        for p in reply.parameters
    ]
    parts.append(f"<h2>{_e(w['parameters'])}</h2>")
    parts.append(
        _rows(parameters, [t["parameter"], t["value"], t["unit"], w["region"], t["effective_from"], t["source"]])
    )
    parts.append(
        "<footer>"
        f"{_e(t['version'])}：{_e(reply.policy_version)}<br>"
        f"{_e(t['request_hash'])}：{_e(reply.request_hash)}<br>"
        f"{_e(w['printed'])}：{_e(printed.strftime('%Y-%m-%d %H:%M:%S %Z'))}"
        "</footer>"
    )
    return (
        f'<!DOCTYPE html><html lang="{"zh-CN" if lang == "zh" else "en"}"><head><meta charset="utf-8">'
        f"<title>{_e(TITLE[lang])}</title><style>{STYLE}</style></head><body>" + "".join(parts) + "</body></html>\n"
    )


def chromium() -> str | None:
    return next((path for name in CHROMIUM if (path := shutil.which(name))), None)


def print_pdf(html_text: str, target: Path) -> None:
    """The page printed by headless Chromium into `target` (a temporary file the caller renames)."""
    browser = chromium()
    if browser is None:
        raise ClientError(ExitCode.BAD_INPUT, "no_chromium")
    with tempfile.TemporaryDirectory(prefix="receipt-") as scratch:
        page = Path(scratch) / "receipt.html"
        page.write_text(html_text, encoding="utf-8")
        profile = Path(scratch) / "profile"
        try:
            result = subprocess.run(
                [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--print-to-pdf={target}", page.as_uri()],
                capture_output=True,
                text=True,
                timeout=120,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise ClientError(ExitCode.SERVER_ERROR, "pdf_failed", detail=type(error).__name__) from None
    if result.returncode != 0 or not target.is_file() or target.stat().st_size == 0:
        detail = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1][:200]
        raise ClientError(ExitCode.SERVER_ERROR, "pdf_failed", detail=detail)
