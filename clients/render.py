"""Decisions on the terminal: the answer first (per program the outcome, the amount and the rule or
two that decided it), then what is missing, assumed or worth a referral; every rule behind
`--detail`. Tables fold long Chinese text (it has no spaces to wrap at) and fit the terminal.
"""

from __future__ import annotations

from collections import Counter

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from clients import explain
from clients.facts import fen_to_yuan, parameter_label, unit_label
from clients.texts import TEXT
from service.api import eligibility_pb2 as pb


def _header(reply: pb.EvaluateResponse, lang: str, out: Console) -> None:
    t = TEXT[lang]
    region = explain.in_lang(reply.region, "name", lang)
    out.print(
        f"{t['region']}：{region}（{reply.region.code}）  {t['date']}：{reply.evaluation_date}"
        if lang == "zh"
        else f"{t['region']}: {region} ({reply.region.code})  {t['date']}: {reply.evaluation_date}",
        highlight=False,
    )


def _bullets(title: str, lines: list[str], out: Console) -> None:
    if not lines:
        return
    out.print()
    out.print(title, style="bold", highlight=False)
    grid = Table.grid(padding=(0, 1))  # a hanging indent: a wrapped line starts under the text, not the bullet
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for line in lines:
        grid.add_row(" ·", Text(line))
    out.print(grid)


def render_decision(reply: pb.EvaluateResponse, lang: str, out: Console, detail: bool = False) -> None:
    t = TEXT[lang]
    names = explain.names_of(reply, lang)
    _header(reply, lang, out)

    table = Table(box=box.SIMPLE_HEAD, show_footer=True, pad_edge=False)
    table.add_column(t["program"], footer=t["total"], overflow="fold", ratio=3)
    table.add_column(t["decision"], overflow="fold", ratio=5)
    table.add_column(
        t["amount"], justify="right", footer=fen_to_yuan(reply.total_monthly_amount.fen, True), no_wrap=True
    )
    for d in explain.leading_first(list(reply.decisions)):
        reasons = explain.deciding_reasons(d, lang, names)
        decision = explain.outcome_text(d, lang)
        if reasons:
            decision += ("：" if lang == "zh" else ": ") + ("；" if lang == "zh" else "; ").join(reasons)
        style = "bold" if d.outcome == pb.OUTCOME_ELIGIBLE and d.monthly_amount.fen else None
        table.add_row(names[d.program_id], decision, fen_to_yuan(d.monthly_amount.fen, True), style=style)
    out.print(table)

    missing = explain.missing_facts(reply, lang)
    _bullets(t["missing_title"], [m.text(lang) for m in missing], out)
    _bullets(t["caveats"], [*explain.assumptions(reply, lang), *explain.caveats(reply, lang)], out)
    _bullets(t["referrals"], [explain.referral_text(r, lang) for r in reply.referrals], out)
    out.print()
    out.print(f"{t['version']}{t['colon']}{reply.policy_version}", highlight=False)
    if detail:
        render_rules(reply, lang, out)
    else:
        out.print(t["detail_hint"], style="dim", highlight=False)


def render_rules(reply: pb.EvaluateResponse, lang: str, out: Console) -> None:
    """Every rule of every program with its result and citation (--detail)."""
    t = TEXT[lang]
    names = explain.names_of(reply, lang)
    for d in explain.leading_first(list(reply.decisions)):
        out.print()
        out.print(
            t["heading"].format(
                program=names[d.program_id],
                outcome=explain.outcome_text(d, lang),
                amount=fen_to_yuan(d.monthly_amount.fen, True),
            ),
            style="bold",
            highlight=False,
        )
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("", no_wrap=True)
        table.add_column(t["reason"], overflow="fold", ratio=3)
        table.add_column(t["citation"], overflow="fold", ratio=2)
        for r in d.reasons:
            table.add_row(explain.rule_mark(r, lang), explain.in_lang(r, "text", lang), explain.citation(r, lang))
        for m in d.missing_facts:
            table.add_row(t["missing"], explain.missing_label(m, lang), m.rule_id)
        for i in d.interactions:
            compared = ", ".join(
                f"{names.get(p, p)} {fen_to_yuan(a.fen, True)}" for p, a in zip(i.programs, i.amounts, strict=False)
            )
            kept = f"; {t['kept']} {names.get(i.kept_program, i.kept_program)}" if i.kept_program else ""
            table.add_row(
                t["interaction"],
                f"{explain.in_lang(i, 'text', lang)} ({t['compared']}: {compared}{kept})",
                explain.citation(i, lang),
            )
        out.print(table)
    if reply.referrals:
        out.print()
        out.print(t["referrals"], style="bold")
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column(t["reason"], overflow="fold", ratio=3)
        table.add_column(t["citation"], overflow="fold", ratio=2)
        for referral in reply.referrals:
            table.add_row(explain.referral_text(referral, lang), explain.citation(referral, lang))
        out.print(table)


def summary_table(
    programs: list[pb.ProgramInfo], people: dict[str, Counter], paid: Counter, rows: int, errors: int, lang: str
) -> Table:
    """Per program: people by outcome and the monthly total in yuan."""
    t = TEXT[lang]
    outcomes = [v.number for v in pb.Outcome.DESCRIPTOR.values if v.number != 0]
    table = Table(title=t["rows"].format(rows=rows, ok=rows - errors, errors=errors), show_footer=True)
    table.add_column(t["program"], footer=t["total"], overflow="fold")
    for number in outcomes:
        table.add_column(t[explain.outcome_key(number)], justify="right")
    table.add_column(t["monthly"], justify="right", footer=fen_to_yuan(sum(paid.values()), True))
    for p in programs:
        table.add_row(
            explain.in_lang(p, "name", lang),
            *(str(people[p.program_id][n]) for n in outcomes),
            fen_to_yuan(paid[p.program_id], True),
        )
    return table


def programs_table(reply: pb.ListProgramsResponse, lang: str) -> Table:
    t = TEXT[lang]
    table = Table(title=t["programs_title"].format(version=reply.policy_version, date=reply.as_of), box=box.SIMPLE_HEAD)
    table.add_column(t["program"], overflow="fold")
    table.add_column("id", overflow="fold")
    table.add_column(t["citation"], overflow="fold")
    table.add_column(t["rules"], justify="right")
    for p in reply.programs:
        table.add_row(explain.in_lang(p, "name", lang), p.program_id, p.citation, str(len(p.rule_ids)))
    return table


# The policy files' source keys (policy.yaml `sources`), said briefly; the full source is in --json.
SOURCE_KINDS = {
    "zh": {"national": "国家文件", "zj": "浙江省文件", "plan": "浙江省规划", "reference": "参考值，待核实"},
    "en": {"national": "national", "zj": "Zhejiang", "plan": "Zhejiang plan", "reference": "reference, to confirm"},
}


def standards_table(reply: pb.ListProgramsResponse, region: str, lang: str) -> Table:
    t = TEXT[lang]
    table = Table(
        title=t["standards_title"].format(region=region, date=reply.as_of, version=reply.policy_version),
        box=box.SIMPLE_HEAD,
    )
    table.add_column(t["parameter"], overflow="fold")
    table.add_column(t["value"], justify="right", no_wrap=True)
    table.add_column(t["unit"], overflow="fold")
    table.add_column(t["effective_from"], no_wrap=True)
    table.add_column(t["source"], overflow="fold")
    for p in reply.parameters:
        table.add_row(
            parameter_label(p.parameter, lang),
            p.value,
            unit_label(p.unit, lang),
            p.effective_from,
            f"{SOURCE_KINDS[lang].get(p.confidence, p.confidence)} ({p.region_code})",
        )
    return table
