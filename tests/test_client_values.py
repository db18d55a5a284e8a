"""Units of the caseworker client that need no server: reading values as offices write them, the
service's field errors read in Chinese, and the renderers on replies built here, including the
fields the service fills in as the policy-fidelity work lands (assumptions, caveats, conditional
referrals, Chinese citations)."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from client_support import LIVING, NURSING, PERSON, widest_line
from rich.console import Console

from clients import calls, explain, facts, receipt, render
from clients.texts import ClientError
from service.api import eligibility_pb2 as pb

# --- Values -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yuan", "fen"),
    [("1500", 150000), ("0.1", 10), ("1080.55", 108055), (1500.1, 150010), ("1,500.50", 150050), (" 2，000 ", 200000)],
)
def test_yuan_to_fen_is_exact(yuan, fen):
    assert facts.yuan_to_fen(yuan) == fen


@pytest.mark.parametrize("yuan", ["12.345", "abc", "NaN", True, "1.5.0"])
def test_yuan_to_fen_refuses_what_is_not_money(yuan):
    with pytest.raises(ClientError):
        facts.yuan_to_fen(yuan)


def test_fen_to_yuan():
    assert facts.fen_to_yuan(54000) == "540.00"
    assert facts.fen_to_yuan(123456789, grouped=True) == "1,234,567.89"


@pytest.mark.parametrize(
    ("value", "date"),
    [
        ("2010-10-22", "2010-10-22"),
        ("2010/10/22", "2010-10-22"),
        ("2010/1/2", "2010-01-02"),
        ("2010.10.22", "2010-10-22"),
        ("2010年10月22日", "2010-10-22"),
        ("20101022", "2010-10-22"),
        ("2010/10/22 0:00:00", "2010-10-22"),
        ("40473", "2010-10-22"),  # an Excel serial date
        (40473, "2010-10-22"),
        (40473.0, "2010-10-22"),
        (dt.datetime(2010, 10, 22, 0, 0), "2010-10-22"),
        (dt.date(2010, 10, 22), "2010-10-22"),
    ],
)
def test_dates_as_offices_write_them(value, date):
    assert facts.parse_date(value) == date


@pytest.mark.parametrize("value", ["2010-02-30", "22/10/2010", "yesterday", "0"])
def test_what_is_not_a_date(value):
    with pytest.raises(ClientError):
        facts.parse_date(value)


@pytest.mark.parametrize("value", ["3.30102E+17", "3.30102e17", 330102197005050000, 3.30102197005050e17])
def test_an_id_number_excel_turned_into_a_number_is_refused_saying_why(value):
    with pytest.raises(ClientError) as caught:
        facts.parse_id_number(value)
    assert "文本" in caught.value.text("zh") and "Text" in caught.value.text("en")


def test_enums_in_english_chinese_and_any_case():
    household = pb.HouseholdStatus.DESCRIPTOR
    for spelling in ("dibao_edge", "Dibao-Edge", "HOUSEHOLD_STATUS_DIBAO_EDGE", "低保边缘", " 低保边缘 "):
        assert facts.enum_number(household, spelling) == pb.HOUSEHOLD_STATUS_DIBAO_EDGE
    assert facts.enum_number(pb.CapacityLevel.DESCRIPTOR, "重度失能") == pb.CAPACITY_LEVEL_SEVERE_LOSS
    with pytest.raises(ClientError) as caught:
        facts.enum_number(household, "unspecified")
    assert "低保" in caught.value.text("zh")
    for enum_desc in pb.DESCRIPTOR.enum_types_by_name.values():
        for name in facts.short_names(enum_desc):
            assert facts.short_name(enum_desc, facts.enum_number(enum_desc, name)) == name


def test_build_request_maps_flat_names_onto_person():
    request = facts.build_request(
        {
            **PERSON,
            "birth_date": dt.date(1970, 5, 5),
            "own_income_yuan": "800.50",
            "capacity_level": "mild_loss",
            "capacity_assessed_on": dt.date(2020, 3, 1),
            "other_benefits": "work_injury_nursing_allowance",
            "in_institutional_care": "否",
            "disability_grade": "一级",
            "programs": f"{NURSING},{LIVING}",
            "as_of": "",
        },
        default_as_of="2020-08-01",
    )
    person = request.person
    assert person.birth_date == "1970-05-05" and person.own_income_fen == 80050
    assert person.disability.grade == 1 and person.disability.category == pb.DISABILITY_CATEGORY_PHYSICAL
    assert person.capacity_assessment.level == pb.CAPACITY_LEVEL_MILD_LOSS
    assert person.capacity_assessment.assessed_on == "2020-03-01"
    assert list(person.other_benefits) == [pb.BENEFIT_WORK_INJURY_NURSING_ALLOWANCE]
    assert person.HasField("in_institutional_care") and not person.in_institutional_care
    assert not person.HasField("household_income_per_head_fen")  # not stated stays not stated
    assert list(request.programs) == [NURSING, LIVING] and request.as_of == "2020-08-01"


def test_headers_in_chinese_and_english_any_case():
    assert facts.column_key("身份证号") == facts.column_key(" ID_Number ") == "id_number"
    assert (
        facts.column_key("家庭人均月收入（元）")
        == facts.column_key("家庭人均月收入(元)")
        == "household_income_per_head_yuan"
    )
    assert facts.column_key("户籍地区划代码") == "region_code"
    assert facts.column_key("姓名") is None


# --- The service's field errors in Chinese ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "description", "chinese"),
    [
        ("person.id_number", "check character does not match (GB 11643-1999)", "身份证号：校验码不符"),
        (
            "person.birth_date",
            "does not agree with the birth date in the ID number",
            "出生日期：与身份证号中的出生日期",
        ),
        (
            "person.region_code",
            "unknown region code 339999: no such city in Zhejiang",
            "户籍地区划代码：没有这个区划代码",
        ),
        ("person.disability.grade", "must be 1 to 4, or 0 for no certificate", "残疾等级：应为 1 至 4 级"),
        ("person.household_income_per_head_fen", "must not be negative", "家庭人均月收入（元）：不能为负数"),
        (
            "as_of",
            "2030-01-01 is outside the policy period 2016-01-01 to 2025-12-31",
            "评估日期：2030-01-01 不在政策有效期内",
        ),
    ],
)
def test_field_errors_read_in_chinese(field, description, chinese):
    assert calls.field_error_text(field, description, "zh").startswith(chinese)
    assert calls.field_error_text(field, description, "en").endswith(description)


# --- Rendering a reply built here (the fields the service is starting to fill) ---------------------------


def reply_with_everything() -> pb.EvaluateResponse:
    nursing = pb.ProgramDecision(
        program_id=NURSING,
        name_zh="重度残疾人护理补贴",
        name_en="Nursing subsidy",
        outcome=pb.OUTCOME_ELIGIBLE,
        monthly_amount=pb.Money(fen=54000),
        reasons=[
            pb.Reason(
                rule_id="nursing.route",
                result=pb.RULE_RESULT_PASSED,
                kind="route",
                text_zh="完全不能自理：按当地低保标准的比例发放 — ✓ 自理能力",
                text_en="Fully dependent — ✓",
                citation="Guofa [2015] No. 52",
                citation_zh="国发〔2015〕52号",
            )
        ],
        assumptions=[
            pb.Assumption(
                fact="in_institutional_care",
                value="false",
                rule_id="nursing.institution",
                label_zh="入住经认定的照护机构",
                label_en="in approved institutional care",
            )
        ],
    )
    elderly = pb.ProgramDecision(
        program_id="elderly_care_subsidy",
        name_zh="养老服务补贴",
        name_en="Elderly care subsidy",
        outcome=pb.OUTCOME_ELIGIBLE,
        monthly_amount=pb.Money(fen=0),
        interactions=[
            pb.Interaction(
                kind="take_higher",
                programs=["elderly_care_subsidy", NURSING],
                amounts=[pb.Money(fen=30000), pb.Money(fen=54000)],
                kept_program=NURSING,
                text_zh="养老服务补贴与重度残疾人护理补贴就高享受其一",
                citation="Guofa [2015] No. 52",
            )
        ],
    )
    living = pb.ProgramDecision(
        program_id=LIVING,
        name_zh="困难残疾人生活补贴",
        name_en="Living allowance",
        outcome=pb.OUTCOME_UNDETERMINED,
        missing_facts=[
            pb.MissingFact(fact="own_income", rule_id="living.r2", label_zh="本人月收入", label_en="own income")
        ],
    )
    return pb.EvaluateResponse(
        policy_version="abc123",
        evaluation_date="2020-08-01",
        region=pb.ResolvedRegion(code="330102", name_zh="上城区", name_en="Shangcheng"),
        decisions=[living, elderly, nursing],
        referrals=[
            pb.Referral(
                rule_id="referral.dibao",
                text_zh="可按单人户申请低保",
                text_en="may apply for dibao alone",
                citation="Zhejiang plan",
                citation_zh="浙江省社会福利规划",
                conditional=True,
                conditions=[pb.MissingFact(fact="depends_on_family_support", label_zh="依靠家庭供养")],
            )
        ],
        caveats=[pb.Caveat(kind="unconfirmed_value", subject="dibao_standard", text_zh="低保标准为参考值，待核实")],
        total_monthly_amount=pb.Money(fen=54000),
        request_hash="f00d",
    )


def rendered(reply: pb.EvaluateResponse, lang: str, detail: bool = False) -> str:
    with open(os.devnull, "w") as sink:
        console = Console(width=80, record=True, file=sink)
        render.render_decision(reply, lang, console, detail=detail)
    return console.export_text()


def test_renderer_shows_assumptions_caveats_conditional_referrals_and_chinese_citations():
    reply = reply_with_everything()
    zh = rendered(reply, "zh")
    lines = zh.splitlines()
    first = [
        next(i for i, line in enumerate(lines) if name in line)
        for name in ("重度残疾人护理补贴", "养老服务补贴", "困难残疾人生活补贴")
    ]
    assert first == sorted(first)  # paid, eligible unpaid, undetermined
    assert "符合，不发放" in zh and "改发较高的" in zh
    names = explain.names_of(reply, "zh")
    assert explain.deciding_reasons(reply.decisions[1], "zh", names) == ["改发较高的重度残疾人护理补贴（540.00 元）"]
    assert "假定入住经认定的照护机构为“否”，请核实" in zh
    assert "低保标准为参考值，待核实" in zh
    assert "可按单人户申请低保（须核实：依靠家庭供养）" in zh
    assert "缺少本人月收入：用 --own-income 或列“本人月收入（元）”提供" in zh
    assert widest_line(zh) <= 80

    detail = rendered(reply, "zh", detail=True)
    assert "国发〔2015〕52号" in detail and "浙江省社会福利规划" in detail
    english = rendered(reply, "en", detail=True)
    assert "Guofa [2015] No. 52" in english and "assumed in approved institutional care is 'no'" in english
    # No Chinese citation given: the English one is shown in Chinese mode too.
    assert explain.citation(reply.decisions[1].interactions[0], "zh") == "Guofa [2015] No. 52"


def test_receipt_of_a_built_reply():
    page = receipt.render_html(reply_with_everything(), PERSON["id_number"], "zh", dt.datetime(2026, 1, 2, 3, 4, 5))
    assert "330102********0012" in page and PERSON["id_number"] not in page
    assert "2026-01-02 03:04:05" in page and "abc123" in page and "f00d" in page
    assert "国发〔2015〕52号" in page and "低保标准为参考值" in page and "须核实：依靠家庭供养" in page


def test_batch_cells_give_the_deciding_reason_and_missing_facts():
    from clients.outputs import Layout, Tally
    from clients.sheets import Row, Sheet

    reply = reply_with_everything()
    programs = [pb.ProgramInfo(program_id=d.program_id, name_zh=d.name_zh, name_en=d.name_en) for d in reply.decisions]
    layout = Layout.of(Sheet(header=[], keys=[], rows=iter(())), programs, "zh")  # no office columns
    row = Row(line=2, cells=[])
    cells = layout.cells(row, pb.EvaluateBatchResponse(index=0, response=reply))
    record = dict(zip(layout.header, cells, strict=True))
    assert record["困难残疾人生活补贴结论"] == "无法判定" and record["困难残疾人生活补贴缺少信息"] == "本人月收入"
    assert record["养老服务补贴结论"] == "符合，不发放" and "改发较高的" in record["养老服务补贴理由"]
    assert record["重度残疾人护理补贴每月金额（元）"] == "540.00" and record["每月合计（元）"] == "540.00"
    tally = Tally()
    tally.add(layout, cells)
    assert tally.undetermined == 1 and tally.paid[NURSING] == 54000
    assert tally.people["elderly_care_subsidy"][pb.OUTCOME_ELIGIBLE] == 1
