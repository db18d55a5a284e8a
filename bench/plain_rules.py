"""The same four programs written as plain Python if/else: the baseline the engine is measured
against. Figures are read from the resolved parameters, so only the control flow is hand-written.
Deliberately not used by the service."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal


def _round(fen: Decimal) -> int:
    return int((fen / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP) * 100)


def decide(f: dict, p: dict) -> dict[str, tuple[str, int]]:
    """program id -> (outcome, monthly fen) for the common cases (missing facts count as False)."""
    zj = f["in_zhejiang"]
    hs = f.get("household_status")
    age = f["age_years"]
    cert = f.get("has_disability_certificate", False)
    grade = f.get("disability_grade", 0)
    cat = f.get("disability_category")
    im = ("intellectual", "mental", "multiple")  # facts.yaml group intellectual_or_mental
    severe_or_im = cert and (grade <= 2 or (grade >= 3 and cat in im))
    out: dict[str, tuple[str, int]] = {}
    work_injury = f.get("work_injury_nursing_allowance", False)
    dibao = p["dibao_standard"]
    limit = dibao * p["low_income_multiplier"]

    # elderly
    lvl = f.get("capacity_level")
    on = f["evaluation_date"]
    assessed = f.get("capacity_assessed_on")
    amounts = {
        "mild_loss": p["elderly_amount_mild"],
        "moderate_loss": p["elderly_amount_moderate"],
        "severe_loss": p["elderly_amount_severe"],
    }
    if (
        zj
        and age >= p["elderly_minimum_age"]
        and (hs == "dibao" or (hs == "dibao_edge" and p["elderly_dibao_edge_extension"] != 0))
        and lvl in amounts
        and assessed is not None
        and assessed <= on
        and hs != "destitute"
    ):
        amount = amounts[lvl] * (p["elderly_dibao_edge_share"] if hs == "dibao_edge" else 1)
        out["elderly_care_subsidy"] = ("ELIGIBLE", _round(amount))
    else:
        out["elderly_care_subsidy"] = ("INELIGIBLE", 0)

    # children
    cs = f.get("child_status", "none")
    minor = age < p["adult_age"]
    child_routes = []
    levels = ("primary", "junior_secondary", "senior_secondary", "junior_college", "undergraduate")
    in_school = f.get("in_full_time_education") and f.get("education_level") in levels
    if zj and (minor or (in_school and cs != "none")):
        if cs == "institutional_orphan":
            child_routes.append(("orphan", p["child_standard_institution"]))
        if cs in ("community_orphan", "de_facto_unsupported"):
            child_routes.append(("orphan", p["child_standard_community"]))
        if minor and hs in ("dibao", "dibao_edge") and severe_or_im:
            child_routes.append(("disabled", p["child_standard_community"]))
        if minor and hs == "dibao" and f.get("serious_illness"):
            child_routes.append(("ill", p["child_standard_community"] * p["child_serious_illness_share"]))
    out["child_basic_living_allowance"] = (
        ("ELIGIBLE", _round(max(a for _, a in child_routes))) if child_routes else ("INELIGIBLE", 0)
    )

    # living allowance
    low = hs in ("dibao", "dibao_edge") or f.get("household_income_per_head", 10**12) < limit
    own = p["working_age_min"] <= age <= p["working_age_max"] and f.get("own_income", 10**12) < limit
    excluded_by_child = any(r in ("orphan", "disabled") for r, _ in child_routes)
    if zj and cert and hs != "destitute" and not work_injury and (low or own) and not excluded_by_child:
        out["disability_living_allowance"] = ("ELIGIBLE", _round(dibao * p["living_allowance_share"]))
    else:
        out["disability_living_allowance"] = ("INELIGIBLE", 0)

    # nursing
    shares = {
        "fully_dependent": p["nursing_share_fully_dependent"],
        "mostly_dependent": p["nursing_share_mostly_dependent"],
        "partly_dependent": p["nursing_share_partly_dependent"],
    }
    sc = f.get("self_care")
    if (
        zj
        and cert
        and f.get("long_term_care_need")
        and (grade <= 2 or cat in im)
        and hs != "destitute"
        and not work_injury
        and sc in shares
    ):
        amount = dibao * shares[sc] * (p["nursing_institution_multiplier"] if f.get("in_institutional_care") else 1)
        out["disability_nursing_subsidy"] = ("ELIGIBLE", _round(amount))
    else:
        out["disability_nursing_subsidy"] = ("INELIGIBLE", 0)

    e, n = out["elderly_care_subsidy"], out["disability_nursing_subsidy"]
    if e[0] == n[0] == "ELIGIBLE":
        if e[1] >= n[1]:
            out["disability_nursing_subsidy"] = ("ELIGIBLE", 0)
        else:
            out["elderly_care_subsidy"] = ("ELIGIBLE", 0)
    return out
