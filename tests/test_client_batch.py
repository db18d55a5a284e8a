"""The caseworker client's batch against the real service, with the files offices keep: CSV from
Excel on Chinese Windows (GB18030), UTF-8 with a BOM, .xlsx, Chinese headers, their own columns,
short rows; and the files it must never destroy."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import openpyxl
import pytest
from client_support import (
    BORN,
    LIVING,
    NURSING,
    PERSON,
    bad_check,
    id_number,
    no_library_noise,
    run,
    widest_line,
    with_check,
)
from support import ROOT, free_port, start_service

CHINESE_HEADER = {
    "id_number": "身份证号",
    "birth_date": "出生日期",
    "region_code": "户籍地区划代码",
    "household_status": "家庭经济状况",
    "disability_grade": "残疾等级",
    "disability_category": "残疾类别",
    "long_term_care_need": "长期照护需求",
    "self_care": "自理能力",
    "as_of": "评估日期",
}
# The same person as PERSON, in the words an office types.
CHINESE_VALUES = {
    **PERSON,
    "household_status": "低保",
    "disability_category": "肢体",
    "long_term_care_need": "是",
    "self_care": "完全不能自理",
    "as_of": "2020/8/1",
}


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # as Excel writes
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def batch(server, source: Path, target: Path, *extra: str, columns: int = 200) -> subprocess.CompletedProcess:
    return run("batch", "--address", server.address, "-i", str(source), "-o", str(target), *extra, columns=columns)


def paid(row: dict[str, str], program_name: str) -> str:
    return row[f"{program_name}每月金额（元）"]


# --- Files from Excel ---------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gb18030", "utf-8-sig", "utf-8"])
def test_excel_csv_with_chinese_headers_values_and_own_columns(server, tmp_path, encoding):
    header = ["姓名", " 编号 ", *(CHINESE_HEADER[k] for k in CHINESE_VALUES), "备注"]
    rows = [
        ["张三", "A-001", *CHINESE_VALUES.values(), "复核"],
        ["李四", "A-002", *{**CHINESE_VALUES, "disability_grade": ""}.values(), ""],  # no grade: category alone
    ]
    source, target = tmp_path / "名单.csv", tmp_path / "结果.csv"
    source.write_bytes(csv_text(header, rows).encode(encoding))

    result = batch(server, source, target)

    assert result.returncode == 1, result.stderr  # the second row is refused by the service
    out = read_csv(target)
    assert [r["姓名"] for r in out] == ["张三", "李四"] and [r["备注"] for r in out] == ["复核", ""]
    assert [r["编号"] for r in out] == ["A-001", "A-002"]
    assert "身份证号" not in out[0]  # the facts are not copied: the output needs no ID number
    first = out[0]
    assert first["行号"] == "2" and first["状态"] == "已判定" and first["评估日期"] == "2020-08-01"
    assert first["政策版本"]
    assert first["重度残疾人护理补贴结论"] == "符合" and paid(first, "重度残疾人护理补贴") == "540.00"
    assert paid(first, "困难残疾人生活补贴") == "324.00" and first["每月合计（元）"] == "864.00"
    assert first["养老服务补贴结论"] == "不符合" and first["养老服务补贴理由"]
    assert out[1]["状态"] == "出错" and "残疾等级" in out[1]["错误"]
    assert re.search(r"^第 3 行：.*残疾等级", result.stderr, re.MULTILINE)
    assert no_library_noise(result.stderr)


def test_gbk_file_is_refused_with_a_hint_when_the_encoding_is_wrong(server, tmp_path):
    source = tmp_path / "people.csv"
    source.write_bytes(csv_text(list(CHINESE_HEADER.values()), [list(CHINESE_VALUES.values())]).encode("gb18030"))
    wrong = batch(server, source, tmp_path / "out.csv", "--encoding", "utf-16")
    assert wrong.returncode == 2 and "--encoding" in wrong.stderr and "Traceback" not in wrong.stderr
    assert not (tmp_path / "out.csv").exists()
    right = batch(server, source, tmp_path / "out.csv", "--encoding", "gbk")
    assert right.returncode == 0, right.stderr


def test_xlsx_in_and_out_with_excel_values(server, tmp_path):
    book = openpyxl.Workbook()
    sheet = book.worksheets[0]
    sheet.append(["姓名", "身份证号", "出生日期", "户籍地区划代码", "家庭经济状况", "家庭人均月收入（元）", "评估日期"])
    ordinary = id_number("330102", BORN, 7)
    sheet.append(["王五", ordinary, dt.datetime(1970, 5, 5), 330102, "普通家庭", 1500.5, dt.date(2020, 8, 1)])
    sheet.append(["赵六", int(PERSON["id_number"]), "1970-05-05", "330102", "低保", "1,080.00", "2020-08-01"])
    sheet.append(["孙七", PERSON["id_number"], 25693, "330102", "低保", "", 44044])  # Excel serial dates
    source, target = tmp_path / "people.xlsx", tmp_path / "results.xlsx"
    book.save(source)

    result = batch(server, source, target)

    assert result.returncode == 1, result.stderr
    out = openpyxl.load_workbook(target, read_only=True)
    rows = [list(r) for r in out.worksheets[0].iter_rows(values_only=True)]
    header = rows[0]
    records = [dict(zip(header, r, strict=True)) for r in rows[1:]]
    assert [r["姓名"] for r in records] == ["王五", "赵六", "孙七"]
    assert records[0]["状态"] == "已判定" and records[0]["评估日期"] == "2020-08-01"
    assert records[1]["状态"] == "出错" and "文本" in str(records[1]["错误"])  # an ID stored as a number
    assert records[2]["状态"] == "已判定" and records[2]["评估日期"] == "2020-08-01"  # 44044 = 2020-08-01
    assert "Excel" in result.stderr and "第 3 行" in result.stderr


def test_headers_case_spaces_duplicates_and_missing_columns(server, tmp_path):
    source, target = tmp_path / "people.csv", tmp_path / "out.csv"
    upper = [" ID_Number ", "Birth Date", "REGION_CODE", "as-of"]
    source.write_text(csv_text(upper, [[PERSON["id_number"], "1970-05-05", "330102", "2020-08-01"]]), encoding="utf-8")
    assert batch(server, source, target).returncode == 0

    duplicate = ["身份证号", "出生日期", "户籍地区划代码", "id_number"]
    source.write_text(csv_text(duplicate, [[PERSON["id_number"], "1970-05-05", "330102", "x"]]), encoding="utf-8")
    result = batch(server, source, tmp_path / "dup.csv")
    assert result.returncode == 2 and "身份证号" in result.stderr and "id_number" in result.stderr
    assert not (tmp_path / "dup.csv").exists()

    misspelt = ["ref", "id_numbr", "birth_date", "region_code"]
    source.write_text(csv_text(misspelt, [["1", "x", "1970-05-05", "330102"]]), encoding="utf-8")
    result = batch(server, source, tmp_path / "miss.csv", "--lang", "en")
    assert result.returncode == 2 and "id_number" in result.stderr and "id_numbr" in result.stderr

    source.write_text(",".join(PERSON.values()) + "\n", encoding="utf-8")  # data where the header belongs
    result = batch(server, source, tmp_path / "data.csv", "--lang", "en")
    assert result.returncode == 2 and "first line must name the columns" in result.stderr
    assert PERSON["id_number"] not in result.stderr


def test_short_rows_are_errors_naming_the_row(server, tmp_path):
    header = list(PERSON)
    good = list(PERSON.values())
    text = csv_text(header, [good, good[:5], good])
    source, target = tmp_path / "people.csv", tmp_path / "out.csv"
    source.write_text(text, encoding="utf-8")
    result = batch(server, source, target, "--lang", "en", columns=80)
    assert result.returncode == 1
    assert widest_line(result.stdout) <= 80  # the summary fits; a bad row stays one grep-able line on stderr
    out = read_csv(target)
    assert [r["status"] for r in out] == ["ok", "error", "ok"]
    assert "5 values" in out[1]["error"] and re.search(r"^line 3: .*5 values", result.stderr, re.MULTILINE)


def test_missing_as_of_means_the_batch_as_of(server, tmp_path):
    rows = [
        [PERSON["id_number"], "1970-05-05", "330102", ""],
        [PERSON["id_number"], "1970-05-05", "330102", "2021-01-01"],
    ]
    source, target = tmp_path / "people.csv", tmp_path / "out.csv"
    source.write_text(csv_text(["id_number", "birth_date", "region_code", "as_of"], rows), encoding="utf-8")
    result = batch(server, source, target, "--as-of", "2020-08-01", "--lang", "en")
    assert result.returncode in (0, 5), result.stderr
    assert [r["evaluation_date"] for r in read_csv(target)] == ["2020-08-01", "2021-01-01"]


def test_1200_rows_with_bad_rows(server, tmp_path):
    columns = list(PERSON)
    rows, bad = [], {}  # bad: CSV line number -> why
    for i in range(1200):
        born = BORN + dt.timedelta(days=i // 500)  # sequence numbers 1..500 per birth date
        row = {**PERSON, "id_number": id_number("330102", born, i % 500 + 1), "birth_date": born.isoformat()}
        if i % 2:  # an ordinary household without a disability certificate: nothing to pay
            row.update(household_status="ordinary", disability_grade="", disability_category="")
            row.update(long_term_care_need="", self_care="")
        line = i + 2  # line 1 is the header
        if i % 97 == 13:
            row["id_number"] = bad_check(row["id_number"])
            bad[line] = "checksum"
        elif i % 97 == 40:
            row.update(birth_date="1970-02-30", id_number=with_check("33010219700230007"))
            bad[line] = "date"
        elif i % 97 == 70:
            row["region_code"] = "339999"  # in Zhejiang's range, but no such city
            bad[line] = "region"
        elif i % 251 == 100:
            row["household_status"] = "rich"  # caught by the client before sending
            bad[line] = "client"
        rows.append({"ref": f"case-{i:04d}", **row})
    assert set(bad.values()) == {"checksum", "date", "region", "client"}
    source, target = tmp_path / "people.csv", tmp_path / "results.csv"
    with source.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["ref", *columns])
        writer.writeheader()
        writer.writerows(rows)

    result = batch(server, source, target, "--lang", "en")

    assert result.returncode == 1, result.stderr
    out = read_csv(target)
    assert [r["line"] for r in out] == [str(i + 2) for i in range(len(rows))]
    assert [r["ref"] for r in out] == [r["ref"] for r in rows]
    assert {int(r["line"]) for r in out if r["status"] == "error"} == set(bad)
    assert all(r["error"] for r in out if r["status"] == "error")
    reported = {int(n) for n in re.findall(r"^line (\d+):", result.stderr, re.MULTILINE)}
    assert reported == set(bad)
    assert not any(r["id_number"] in result.stderr or r["id_number"] in target.read_text() for r in rows)

    paying = [r for r in out if r["status"] == "ok" and int(r["line"]) % 2 == 0]
    assert paying and all(
        r[f"{NURSING}_outcome"] == "eligible"
        and r[f"{NURSING}_monthly_yuan"] == "540.00"
        and r[f"{LIVING}_monthly_yuan"] == "324.00"
        and r["total_monthly_yuan"] == "864.00"
        for r in paying
    )
    ok = len(rows) - len(bad)
    assert f"{len(rows)} rows: {ok} decided, {len(bad)} with errors" in result.stdout
    nursing_line = next(line for line in result.stdout.splitlines() if f"{len(paying) * 540:,}.00" in line)
    assert f" {len(paying)} " in nursing_line


# --- Never lose or destroy a file ------------------------------------------------------------------------


def test_same_file_existing_output_and_missing_directory(server, tmp_path):
    source = tmp_path / "people.csv"
    original = csv_text(list(PERSON), [list(PERSON.values())]).encode()
    source.write_bytes(original)

    same = batch(server, source, source)
    assert same.returncode == 2 and "同一个文件" in same.stderr
    other_name = tmp_path / "link.csv"
    other_name.hardlink_to(source)
    assert batch(server, source, other_name).returncode == 2
    assert source.read_bytes() == original

    existing = tmp_path / "results.csv"
    existing.write_text("keep me", encoding="utf-8")
    refused = batch(server, source, existing)
    assert refused.returncode == 2 and "--force" in refused.stderr
    assert existing.read_text(encoding="utf-8") == "keep me"
    assert batch(server, source, existing, "--force").returncode == 0
    assert read_csv(existing)[0]["状态"] == "已判定"

    nowhere = batch(server, source, tmp_path / "no" / "such" / "dir.csv")
    assert nowhere.returncode == 2 and "不存在" in nowhere.stderr and "Traceback" not in nowhere.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.csv", "people.csv", "results.csv"]


def test_unreachable_service_creates_nothing(tmp_path):
    source, target = tmp_path / "people.csv", tmp_path / "out.csv"
    source.write_text(csv_text(list(PERSON), [list(PERSON.values())]), encoding="utf-8")
    address = f"127.0.0.1:{free_port()}"
    result = run("batch", "-i", str(source), "-o", str(target), "--lang", "en", env={"SUBSIDY_ADDRESS": address})
    assert result.returncode == 3 and "cannot reach the eligibility service" in result.stderr
    assert no_library_noise(result.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["people.csv"]


def _people_csv(path: Path, n: int) -> None:
    rows = []
    for i in range(n):
        born = BORN + dt.timedelta(days=i // 900)
        row = {**PERSON, "id_number": id_number("330102", born, i % 900 + 1), "birth_date": born.isoformat()}
        if i % 3 == 1:
            row.update(household_status="ordinary", self_care="partly_dependent")
        rows.append(["张" + str(i), *row.values()])
    path.write_text(csv_text(["姓名", *PERSON], rows), encoding="utf-8")


def test_interrupted_batch_is_marked_incomplete_and_resumes_to_the_same_file(tmp_path):
    source = tmp_path / "people.csv"
    _people_csv(source, 4000)
    first = start_service(tmp_path, name="first")
    target = tmp_path / "results.csv"
    client = subprocess.Popen(
        [sys.executable, "-m", "clients.caseworker", "batch", "--address", first.address, "-i", str(source)]
        + ["-o", str(target), "--as-of", "2020-08-01"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    try:
        # Kill the service once some rows are written (the temporary file beside the output grows).
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and client.poll() is None:
            temps = list(tmp_path.glob(".results.csv.*"))
            if temps and temps[0].stat().st_size > 50_000:
                break
            time.sleep(0.05)
        assert client.poll() is None, "the batch finished before the service could be stopped"
        first.stop(signal.SIGKILL)
        _, stderr = client.communicate(timeout=120)
    finally:
        client.kill()
        first.stop(signal.SIGKILL)

    assert client.returncode == 6, stderr
    incomplete = tmp_path / "results.incomplete.csv"
    assert not target.exists() and incomplete.exists()
    assert "未完成" in stderr and "--resume" in stderr and no_library_noise(stderr)
    decided = read_csv(incomplete)
    assert 0 < len(decided) < 4000
    assert [r["行号"] for r in decided] == [str(i + 2) for i in range(len(decided))]

    second = start_service(tmp_path, name="second")
    try:
        fresh = run("batch", "--address", second.address, "-i", str(source), "-o", str(tmp_path / "fresh.csv"))
        fresh_args = ["--address", second.address, "-i", str(source), "-o", str(target), "--resume"]
        resumed = run("batch", *fresh_args, "--as-of", "2020-08-01")
        again = run("batch", *fresh_args, "--as-of", "2020-08-01")
    finally:
        second.stop()
    assert fresh.returncode == resumed.returncode == 5, fresh.stderr + resumed.stderr  # some undetermined
    assert f"已判定 {len(decided)} 行" in resumed.stderr
    assert target.read_bytes() == (tmp_path / "fresh.csv").read_bytes()
    assert not incomplete.exists()
    assert again.returncode == 2  # nothing left to resume, and the output exists
    assert "共 4000 行：成功 4000 行" in resumed.stdout  # the carried-over rows count too


def test_the_batch_benchmark_runs():
    """`python -m bench.client_batch` (the 30,000-row timing in the README), on a few rows."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.client_batch", "--rows", "300"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^300 rows: [\d.]+ s, [\d,]+ rows/s; CPU: client [\d.]+ s, service [\d.]+ s", result.stdout, re.M)
