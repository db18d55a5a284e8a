"""A decision read the way a caseworker asks about it: which programs pay, which one rule or two
decided a "no", what is missing and where to supply it, what was assumed.

The terminal, the receipt and the batch output all say it with these functions, so they agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from clients.facts import FLAGS, fen_to_yuan, key_label, key_of_fact, short_name, value_label
from clients.texts import TEXT
from service.api import eligibility_pb2 as pb

# Reasons are "title — test with its numbers"; the title is the rule in plain words.
_TITLE_SEPARATOR = " — "
_PASSED, _FAILED = pb.RULE_RESULT_PASSED, pb.RULE_RESULT_FAILED


def in_lang(message: object, field: str, lang: str) -> str:
    """The text in the chosen language, or the other one when the service left it empty."""
    other = "en" if lang == "zh" else "zh"
    return getattr(message, f"{field}_{lang}") or getattr(message, f"{field}_{other}")


def citation(message: pb.Reason | pb.Interaction | pb.Referral, lang: str) -> str:
    """The Chinese citation when the service gives one, else the English form."""
    return (message.citation_zh if lang == "zh" else "") or message.citation


def title(text: str) -> str:
    return text.split(_TITLE_SEPARATOR, 1)[0].strip()


def rule_mark(reason: pb.Reason, lang: str) -> str:
    """How a rule came out, in words that fit its kind: a failed exclusion is good news, not a failure."""
    t = TEXT[lang]
    result = short_name(pb.RuleResult.DESCRIPTOR, reason.result)
    if result not in ("passed", "failed"):
        return t["unknown"]
    kind = reason.kind if reason.kind in ("condition", "exclusion") else "other"  # route, adjustment
    return t[f"{kind}_{result}"]


def outcome_key(number: int) -> str:
    return short_name(pb.Outcome.DESCRIPTOR, number)


def _kept_instead(decision: pb.ProgramDecision) -> pb.Interaction | None:
    """The "take the higher" that left this program eligible but unpaid, if one did."""
    if decision.outcome != pb.OUTCOME_ELIGIBLE or decision.monthly_amount.fen:
        return None
    for interaction in decision.interactions:
        if interaction.kind == "take_higher" and interaction.kept_program not in ("", decision.program_id):
            return interaction
    return None


def outcome_text(decision: pb.ProgramDecision, lang: str) -> str:
    t = TEXT[lang]
    return t["not_paid"] if _kept_instead(decision) else t[outcome_key(decision.outcome)]


def deciding_reasons(decision: pb.ProgramDecision, lang: str, names: dict[str, str], limit: int = 2) -> list[str]:
    """The one or two rules that decided, in plain words (the rule titles)."""
    t = TEXT[lang]
    kept = _kept_instead(decision)
    if kept is not None:
        amounts = {p: a.fen for p, a in zip(kept.programs, kept.amounts, strict=False)}
        program = names.get(kept.kept_program, kept.kept_program)
        amount = fen_to_yuan(amounts.get(kept.kept_program, 0), True)
        return [t["not_paid_because"].format(program=program, amount=amount)]
    reasons = list(decision.reasons)
    if decision.outcome == pb.OUTCOME_ELIGIBLE:
        chosen = [r for r in reasons if r.kind == "route" and r.result == _PASSED][:1]
    elif decision.outcome == pb.OUTCOME_INELIGIBLE:
        chosen = [
            r
            for r in reasons
            if (r.kind == "condition" and r.result == _FAILED) or (r.kind == "exclusion" and r.result == _PASSED)
        ] or [r for r in reasons if r.result == _FAILED]
    else:
        return [missing_label(m, lang) for m in decision.missing_facts][:limit]
    return [title(in_lang(r, "text", lang)) for r in chosen[:limit]]


def missing_label(missing: pb.MissingFact, lang: str) -> str:
    return in_lang(missing, "label", lang) or missing.fact


@dataclass(frozen=True)
class Supply:
    label: str
    flag: str | None
    column: str | None

    def text(self, lang: str) -> str:
        t = TEXT[lang]
        if self.flag is None:
            return self.label
        return t["missing_supply"].format(
            label=self.label, how=t["supply_flag_column"].format(flag=self.flag, column=self.column)
        )


def missing_facts(reply: pb.EvaluateResponse, lang: str) -> list[Supply]:
    """Each missing fact once, over all programs, with the flag or column that supplies it."""
    seen: dict[str, Supply] = {}
    for decision in reply.decisions:
        for missing in decision.missing_facts:
            if missing.fact in seen:
                continue
            key = key_of_fact(missing.fact)
            seen[missing.fact] = Supply(
                missing_label(missing, lang), FLAGS.get(key) if key else None, key_label(key, lang) if key else None
            )
    return list(seen.values())


_BOOL_WORDS = {"zh": {"true": "是", "false": "否"}, "en": {"true": "yes", "false": "no"}}


def _assumed_value(assumption: pb.Assumption, lang: str) -> str:
    if assumption.value in _BOOL_WORDS[lang]:
        return _BOOL_WORDS[lang][assumption.value]
    for enum_desc in pb.DESCRIPTOR.enum_types_by_name.values():
        label = value_label(enum_desc, assumption.value, lang)
        if label != assumption.value:
            return label
    return assumption.value


def assumptions(reply: pb.EvaluateResponse, lang: str) -> list[str]:
    """Each assumed default once, over all programs, to be confirmed."""
    seen: dict[tuple[str, str], str] = {}
    for decision in reply.decisions:
        for a in decision.assumptions:
            label = in_lang(a, "label", lang) or a.fact
            seen.setdefault((a.fact, a.value), TEXT[lang]["assumed"].format(label=label, value=_assumed_value(a, lang)))
    return list(seen.values())


def caveats(reply: pb.EvaluateResponse, lang: str) -> list[str]:
    return list(dict.fromkeys(in_lang(c, "text", lang) for c in reply.caveats if in_lang(c, "text", lang)))


def referral_text(referral: pb.Referral, lang: str) -> str:
    text = in_lang(referral, "text", lang)
    if referral.conditional and referral.conditions:
        conditions = "、".join(missing_label(m, lang) for m in referral.conditions)
        text += TEXT[lang]["if_confirmed"].format(conditions=conditions)
    return text


def _rank(decision: pb.ProgramDecision) -> tuple[int, int]:
    paid = decision.monthly_amount.fen
    if decision.outcome == pb.OUTCOME_ELIGIBLE:
        return (0 if paid else 1, -paid)
    return (2 if decision.outcome == pb.OUTCOME_UNDETERMINED else 3, 0)


def leading_first(decisions: list[pb.ProgramDecision]) -> list[pb.ProgramDecision]:
    """What pays first (the highest amount first), then eligible but unpaid, undetermined, not eligible."""
    return sorted(decisions, key=_rank)


def names_of(reply: pb.EvaluateResponse, lang: str) -> dict[str, str]:
    return {d.program_id: in_lang(d, "name", lang) for d in reply.decisions}
