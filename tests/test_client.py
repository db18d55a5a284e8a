"""The caseworker client for one person, run as a caseworker would: a subprocess against a real server.

The `server` fixture (tests/conftest.py) starts `python -m service` and gives its `.address`.
Batch files: test_client_batch.py; TLS: test_client_tls.py; values and rendering: test_client_values.py.
"""

from __future__ import annotations

import datetime as dt
import json
import re

from client_support import (
    BORN,
    CHILD,
    ELDERLY,
    LIVING,
    NURSING,
    PERSON,
    PERSON_FLAGS,
    bad_check,
    id_number,
    no_library_noise,
    run,
    widest_line,
)
from support import free_port

from clients.receipt import mask_id


def decisions_of(reply: dict) -> dict[str, dict]:
    return {d["programId"]: d for d in reply["decisions"]}


def reply_for(server, *flags: str) -> dict:
    result = run("check", "--address", server.address, "--json", *flags)
    assert result.returncode in (0, 5), result.stderr
    return json.loads(result.stdout)


# --- One person -------------------------------------------------------------------------------------


def test_one_person_leads_with_the_answer_in_chinese_and_english(server):
    reply = reply_for(server, *PERSON_FLAGS)
    decisions = decisions_of(reply)
    assert int(decisions[NURSING]["monthlyAmount"]["fen"]) == 54000
    assert int(decisions[LIVING]["monthlyAmount"]["fen"]) == 32400

    zh = run("check", "--address", server.address, *PERSON_FLAGS)
    en = run("check", "--address", server.address, "--lang", "en", *PERSON_FLAGS)
    assert zh.returncode == 0 and en.returncode == 0, zh.stderr + en.stderr
    zh_lines, en_lines = zh.stdout.splitlines(), en.stdout.splitlines()
    # The programs that pay come first, the highest amount first; the ones that do not pay after.
    order = [d[0] for d in sorted(decisions.items(), key=lambda kv: -int(kv[1]["monthlyAmount"].get("fen", 0)))]
    firsts = [next(i for i, line in enumerate(zh_lines) if decisions[p]["nameZh"] in line) for p in order]
    assert firsts[0] < firsts[1] < firsts[2] and firsts[1] < firsts[3]
    nursing_line = zh_lines[firsts[0]]
    assert "符合" in nursing_line and "540.00" in nursing_line
    assert "864.00" in zh.stdout  # the total
    assert any("不符合" in line and decisions[ELDERLY]["nameZh"] in line for line in zh_lines)
    assert reply["policyVersion"] in zh.stdout and "政策版本" in zh.stdout
    assert any("eligible" in line and "540.00" in line for line in en_lines)
    assert "Policy version" in en.stdout
    # The default view is short: the full rule table only with --detail.
    assert len(zh_lines) < 30
    detail = run("check", "--address", server.address, "--detail", *PERSON_FLAGS)
    assert detail.returncode == 0 and len(detail.stdout.splitlines()) > 2 * len(zh_lines)
    reason = decisions[NURSING]["reasons"][0]
    assert reason["textZh"].split(" — ")[0] in detail.stdout


def test_not_eligible_names_the_deciding_rule_in_plain_words(server):
    reply = reply_for(server, *PERSON_FLAGS)
    elderly = decisions_of(reply)[ELDERLY]
    failed = [r for r in elderly["reasons"] if r.get("result") == "RULE_RESULT_FAILED" and r.get("kind") == "condition"]
    shown = run("check", "--address", server.address, *PERSON_FLAGS).stdout
    assert failed[0]["textZh"].split(" — ")[0] in shown
    assert failed[0]["textZh"] not in shown  # the title only: the test with parameter ids is for --detail


def test_take_the_higher_shows_eligible_not_paid(server):
    born = dt.date(1950, 5, 5)
    flags = [
        *PERSON_FLAGS,
        "--id-number",
        id_number("330102", born, 3),
        "--birth-date",
        born.isoformat(),
        "--capacity-level",
        "severe_loss",
        "--capacity-assessed-on",
        "2020-03-01",
    ]
    decisions = decisions_of(reply_for(server, *flags))
    unpaid = [p for p, d in decisions.items() if d["outcome"] == "OUTCOME_ELIGIBLE" and not d["monthlyAmount"]]
    assert unpaid, "the case should leave one program of a take-the-higher pair unpaid"
    out = run("check", "--address", server.address, *flags).stdout
    kept = next(p for p in (ELDERLY, NURSING) if p not in unpaid)
    line = next(line for line in out.splitlines() if decisions[unpaid[0]]["nameZh"] in line)
    assert "符合，不发放" in line and "改发较高的" in out and decisions[kept]["nameZh"][:4] in out


def test_undetermined_lists_each_missing_fact_once_with_its_flag_and_exits_5(server):
    flags = [f for f in PERSON_FLAGS if f != "--long-term-care-need"]
    flags = flags[: flags.index("--self-care")] + flags[flags.index("--self-care") + 2 :]
    result = run("check", "--address", server.address, *flags)
    assert result.returncode == 5, result.stderr
    assert "--long-term-care-need" in result.stdout and "--self-care" in result.stdout
    assert result.stdout.count("用 --self-care") == 1
    assert "列“自理能力”" in result.stdout


def test_one_person_from_yaml_file_with_chinese_values(server, tmp_path):
    person = tmp_path / "person.yaml"
    # Written as a caseworker would: unquoted dates, 是/否, Chinese enum labels.
    person.write_text(
        f'id_number: "{PERSON["id_number"]}"\n'
        "birth_date: 1970-05-05\n"
        "region_code: 330102\n"
        "household_status: 低保\n"
        "disability_grade: 一级\n"
        "disability_category: 肢体\n"
        "long_term_care_need: 是\n"
        "self_care: 完全不能自理\n"
        "as_of: 2020/8/1\n",
        encoding="utf-8",
    )
    decisions = decisions_of(json.loads(run("check", "--address", server.address, "-f", str(person), "--json").stdout))
    assert int(decisions[NURSING]["monthlyAmount"]["fen"]) == 54000
    assert int(decisions[LIVING]["monthlyAmount"]["fen"]) == 32400


def test_json_file_and_flags_override_it(server, tmp_path):
    person = tmp_path / "person.json"
    person.write_text(json.dumps({**PERSON, "self_care": "partly_dependent"}), encoding="utf-8")
    result = run("check", "--address", server.address, "-f", str(person), "--self-care", "fully_dependent", "--json")
    assert result.returncode == 0, result.stderr
    assert int(decisions_of(json.loads(result.stdout))[NURSING]["monthlyAmount"]["fen"]) == 54000


def test_input_the_service_refuses_is_told_in_chinese_and_exits_2(server):
    flags = [*PERSON_FLAGS, "--id-number", bad_check(PERSON["id_number"])]  # the last --id-number wins
    zh = run("check", "--address", server.address, *flags)
    assert zh.returncode == 2
    assert "身份证号：校验码不符" in zh.stderr
    assert not re.search(r"[A-Za-z]{4,}", zh.stderr.replace("GB", "")), zh.stderr  # no English words
    en = run("check", "--address", server.address, "--lang", "en", *flags)
    assert en.returncode == 2 and "id_number" in en.stderr and "check character" in en.stderr
    assert no_library_noise(zh.stderr) and PERSON["id_number"][:-1] not in zh.stderr


def test_bad_usage_and_bad_values_exit_2_without_traceback(tmp_path):
    unknown_choice = run("check", "--household", "rich")
    assert unknown_choice.returncode == 2 and "Traceback" not in unknown_choice.stderr

    person = tmp_path / "person.yaml"
    person.write_text("household_income_per_head_yuan: 12.345\ndisability_grade: one\nfavourite_colour: red\n")
    unknown_key = run("check", "--file", str(person), "--lang", "en")
    assert unknown_key.returncode == 2 and "favourite_colour" in unknown_key.stderr

    person.write_text("household_income_per_head_yuan: 12.345\ndisability_grade: one\n")
    bad_values = run("check", "--file", str(person))
    assert bad_values.returncode == 2
    assert "家庭人均月收入（元）" in bad_values.stderr and "残疾等级" in bad_values.stderr
    assert "Traceback" not in bad_values.stderr


def test_unreachable_service_exits_3_with_a_clear_message():
    address = f"127.0.0.1:{free_port()}"
    one = run("check", "--address", address, *PERSON_FLAGS)
    assert one.returncode == 3
    assert address in one.stderr and "无法连接" in one.stderr
    assert no_library_noise(one.stderr) and one.stdout == ""


# --- What a caseworker's terminal shows ----------------------------------------------------------------


def test_screen_capture_at_80_columns_fits(server, tmp_path):
    """No line over 80 display cells (a Chinese character takes two), whatever is shown."""
    born = dt.date(1950, 5, 5)
    cases = {
        "default": run("check", "--address", server.address, *PERSON_FLAGS, columns=80),
        "detail": run("check", "--address", server.address, "--detail", *PERSON_FLAGS, columns=80),
        "english": run("check", "--address", server.address, "--lang", "en", *PERSON_FLAGS, columns=80),
        "undetermined": run(
            "check",
            "--address",
            server.address,
            "--id-number",
            id_number("330102", born, 4),
            "--birth-date",
            born.isoformat(),
            "--region",
            "330102",
            "--as-of",
            "2020-08-01",
            columns=80,
        ),
        "help": run("check", "--help", columns=80),
        "top help": run("-h", columns=80),
        "standards": run(
            "standards", "--address", server.address, "--region", "330106", "--as-of", "2020-08-01", columns=80
        ),
        "programs": run("programs", "--address", server.address, columns=80),
    }
    for name, result in cases.items():
        assert result.returncode in (0, 5), (name, result.stderr)
        assert result.stdout.strip(), name
        assert widest_line(result.stdout) <= 80, (name, result.stdout)
        assert widest_line(result.stderr) <= 80, (name, result.stderr)
    assert "540.00" in cases["default"].stdout
    assert "Person" in cases["help"].stdout and "Service connection" in cases["help"].stdout


def test_version_and_completion():
    version = run("--version")
    assert version.returncode == 0 and re.fullmatch(r"subsidy-caseworker \d+\.\d+\.\d+\S*\n", version.stdout)
    completion = run("--show-completion", "bash", env={"SHELL": "/bin/bash"})
    assert completion.returncode == 0 and "complete" in completion.stdout


def test_programs_and_the_standards_in_force(server):
    programs = run("programs", "--address", server.address, "--as-of", "2020-08-01")
    assert programs.returncode == 0, programs.stderr
    for program in (NURSING, LIVING, ELDERLY, CHILD):
        assert program in programs.stdout
    assert "重度残疾人护理补贴" in programs.stdout

    standards = run("standards", "--address", server.address, "--region", "330106", "--as-of", "2020-08-01")
    assert standards.returncode == 0, standards.stderr
    # Hangzhou's dibao standard from 2020-07-01 (policies/parameters/common/dibao_standard.yaml).
    line = next(line for line in standards.stdout.splitlines() if "最低生活保障标准" in line)
    assert "1080" in line and "元/月" in line and "2020-07-01" in line
    as_json = json.loads(run("standards", "--address", server.address, "--region", "330106", "--json").stdout)
    assert as_json["parameters"]


# --- The receipt ------------------------------------------------------------------------------------


def test_receipt_html_masks_the_id_and_carries_the_decision(server, tmp_path):
    reply = reply_for(server, *PERSON_FLAGS)
    target = tmp_path / "receipt.html"
    result = run("check", "--address", server.address, *PERSON_FLAGS, "--output", str(target))
    assert result.returncode == 0, result.stderr
    page = target.read_text(encoding="utf-8")
    assert PERSON["id_number"] not in page and mask_id(PERSON["id_number"]) in page
    assert mask_id(PERSON["id_number"]) == PERSON["id_number"][:6] + "********" + PERSON["id_number"][-4:]
    assert BORN.strftime("%Y%m%d") not in page
    for expected in (reply["policyVersion"], reply["requestHash"], "540.00", "324.00", "864.00", "打印时间"):
        assert expected in page
    assert "城乡居民最低生活保障标准" in page and "1080" in page  # the parameter values read
    first = decisions_of(reply)[NURSING]["reasons"][0]
    assert first["citationZh"] in page  # a Chinese receipt cites in Chinese (the English form behind --lang en)
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left behind

    again = run("check", "--address", server.address, *PERSON_FLAGS, "--output", str(target))
    assert again.returncode == 2 and "--force" in again.stderr
    assert run("check", "--address", server.address, *PERSON_FLAGS, "-o", str(target), "--force").returncode == 0


def test_receipt_pdf_by_headless_chromium(server, tmp_path):
    target = tmp_path / "receipt.pdf"
    result = run("check", "--address", server.address, *PERSON_FLAGS, "--output", str(target))
    assert result.returncode == 0, result.stderr
    data = target.read_bytes()
    assert data.startswith(b"%PDF-") and b"/Type /Page" in data.replace(b"/Type/Page", b"/Type /Page")
    assert list(tmp_path.iterdir()) == [target]
