"""The caseworker client, run as a caseworker would: a subprocess against a real server.

The `server` fixture (tests/conftest.py) starts `python -m service` and gives its `.address`.
"""

import csv
import datetime as dt
import ipaddress
import json
import os
import re
import subprocess
import sys
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support import free_port

from clients import caseworker
from service.api import eligibility_pb2 as pb
from service.api import eligibility_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
NURSING, LIVING = "disability_nursing_subsidy", "disability_living_allowance"


def with_check(body: str) -> str:
    """The 17 digits plus their GB 11643 check character."""
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, WEIGHTS, strict=True)) % 11]


def id_number(region: str, born: dt.date, sequence: int) -> str:
    return with_check(f"{region}{born:%Y%m%d}{sequence:03d}")


def bad_check(number: str) -> str:
    return number[:-1] + ("1" if number[-1] != "1" else "2")


# A Hangzhou resident on dibao, grade 1 physical disability, fully dependent: as of 2020-08-01
# (Hangzhou dibao standard 1,080) nursing 50% = 540 yuan, living allowance 30% = 324 yuan.
BORN = dt.date(1970, 5, 5)
PERSON = {
    "id_number": id_number("330102", BORN, 1),
    "birth_date": BORN.isoformat(),
    "region_code": "330102",
    "household_status": "dibao",
    "disability_grade": "1",
    "disability_category": "physical",
    "long_term_care_need": "yes",
    "self_care": "fully_dependent",
    "as_of": "2020-08-01",
}
PERSON_FLAGS = [
    "--id-number",
    PERSON["id_number"],
    "--birth-date",
    PERSON["birth_date"],
    "--region",
    "330102",
    "--household",
    "dibao",
    "--disability-grade",
    "1",
    "--disability-category",
    "physical",
    "--long-term-care-need",
    "--self-care",
    "fully_dependent",
    "--as-of",
    "2020-08-01",
]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    # A wide terminal, so that long English programme names are not wrapped inside table cells.
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT)}
    env.pop("SUBSIDY_ADDRESS", None)
    return subprocess.run(
        [sys.executable, "-m", "clients.caseworker", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
    )


def decisions_of(reply: dict) -> dict[str, dict]:
    return {d["programId"]: d for d in reply["decisions"]}


# --- One person -------------------------------------------------------------------------------------


def test_one_person_from_flags_json_zh_and_en(server):
    as_json = run("check", "--address", server.address, "--json", *PERSON_FLAGS)
    assert as_json.returncode == 0, as_json.stderr
    reply = json.loads(as_json.stdout)
    decisions = decisions_of(reply)
    assert decisions[NURSING]["outcome"] == "OUTCOME_ELIGIBLE"
    assert int(decisions[NURSING]["monthlyAmount"]["fen"]) == 54000
    assert decisions[LIVING]["outcome"] == "OUTCOME_ELIGIBLE"
    assert int(decisions[LIVING]["monthlyAmount"]["fen"]) == 32400
    assert reply["policyVersion"]

    zh = run("check", "--address", server.address, *PERSON_FLAGS)
    en = run("check", "--address", server.address, "--lang", "en", *PERSON_FLAGS)
    for result, name, eligible in ((zh, "nameZh", "符合"), (en, "nameEn", "eligible")):
        assert result.returncode == 0, result.stderr
        for decision in reply["decisions"]:
            assert decision[name] in result.stdout
        assert "540.00" in result.stdout and "324.00" in result.stdout
        assert eligible in result.stdout
        assert reply["policyVersion"] in result.stdout
    assert "政策版本" in zh.stdout and "Policy version" in en.stdout


def test_one_person_from_yaml_file(server, tmp_path):
    person = tmp_path / "person.yaml"
    # Written as a caseworker would: unquoted dates (YAML reads them as dates), yes/no as booleans.
    person.write_text(
        f'id_number: "{PERSON["id_number"]}"\n'
        "birth_date: 1970-05-05\n"
        "region_code: 330102\n"
        "household_status: dibao\n"
        "disability_grade: 1\n"
        "disability_category: physical\n"
        "long_term_care_need: yes\n"
        "self_care: fully_dependent\n"
        "as_of: 2020-08-01\n",
        encoding="utf-8",
    )
    result = run("check", "--address", server.address, "--file", str(person), "--json")
    assert result.returncode == 0, result.stderr
    decisions = decisions_of(json.loads(result.stdout))
    assert int(decisions[NURSING]["monthlyAmount"]["fen"]) == 54000
    assert int(decisions[LIVING]["monthlyAmount"]["fen"]) == 32400

    table = run("check", "--address", server.address, "--file", str(person))
    assert table.returncode == 0, table.stderr
    assert "540.00" in table.stdout and decisions[NURSING]["nameZh"] in table.stdout


def test_json_file_and_flags_override_it(server, tmp_path):
    person = tmp_path / "person.json"
    person.write_text(json.dumps({**PERSON, "self_care": "partly_dependent"}), encoding="utf-8")
    result = run("check", "--address", server.address, "-f", str(person), "--self-care", "fully_dependent", "--json")
    assert result.returncode == 0, result.stderr
    assert int(decisions_of(json.loads(result.stdout))[NURSING]["monthlyAmount"]["fen"]) == 54000


def test_input_the_service_refuses_names_the_field_and_exits_2(server):
    flags = [*PERSON_FLAGS, "--id-number", bad_check(PERSON["id_number"])]  # the last --id-number wins
    result = run("check", "--address", server.address, "--lang", "en", *flags)
    assert result.returncode == 2
    assert "id_number" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_usage_and_bad_values_exit_2_without_traceback(tmp_path):
    unknown_choice = run("check", "--household", "rich")
    assert unknown_choice.returncode == 2 and "Traceback" not in unknown_choice.stderr

    person = tmp_path / "person.yaml"
    person.write_text("household_income_per_head_yuan: 12.345\ndisability_grade: one\nfavourite_colour: red\n")
    unknown_key = run("check", "--file", str(person), "--lang", "en")
    assert unknown_key.returncode == 2 and "favourite_colour" in unknown_key.stderr

    person.write_text("household_income_per_head_yuan: 12.345\ndisability_grade: one\n")
    bad_values = run("check", "--file", str(person), "--lang", "en")
    assert bad_values.returncode == 2
    assert "household_income_per_head_yuan" in bad_values.stderr and "disability_grade" in bad_values.stderr
    assert "Traceback" not in bad_values.stderr


# --- Unreachable service ----------------------------------------------------------------------------


def test_unreachable_service_exits_3_with_a_clear_message(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    one = run("check", "--address", address, *PERSON_FLAGS)
    assert one.returncode == 3
    assert address in one.stderr and "无法连接" in one.stderr
    assert "Traceback" not in one.stderr and one.stdout == ""

    rows = tmp_path / "in.csv"
    rows.write_text(",".join(PERSON) + "\n" + ",".join(PERSON.values()) + "\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    many = subprocess.run(  # the address from the environment this time
        [sys.executable, "-m", "clients.caseworker", "batch", "-i", str(rows), "-o", str(out), "--lang", "en"],
        cwd=ROOT,
        env={**os.environ, "SUBSIDY_ADDRESS": address},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert many.returncode == 3
    assert "cannot reach the eligibility service" in many.stderr and "Traceback" not in many.stderr
    assert not out.exists()


# --- TLS ------------------------------------------------------------------------------------------


def self_signed(directory: Path) -> tuple[bytes, bytes, Path]:
    """A key and a certificate for 127.0.0.1 that is its own CA; returns (key PEM, cert PEM, cert file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "subsidy test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (directory / "ca.pem").write_bytes(cert_pem)
    return key_pem, cert_pem, directory / "ca.pem"


class TlsFront(pb_grpc.EligibilityServiceServicer):
    """TLS in front of the real server (which serves plaintext), as a TLS-terminating proxy would be."""

    def __init__(self, address: str):
        self.stub = pb_grpc.EligibilityServiceStub(grpc.insecure_channel(address))

    def Evaluate(self, request, context):
        return self.stub.Evaluate(request, timeout=10)


def test_tls_with_a_private_ca(server, tmp_path):
    key_pem, cert_pem, ca_file = self_signed(tmp_path)
    front = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_EligibilityServiceServicer_to_server(TlsFront(server.address), front)
    port = front.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key_pem, cert_pem)]))
    front.start()
    try:
        secure = run("check", "--address", f"127.0.0.1:{port}", "--tls", "--ca-cert", str(ca_file), *PERSON_FLAGS)
        assert secure.returncode == 0, secure.stderr
        assert "540.00" in secure.stdout

        plaintext = run("check", "--address", f"127.0.0.1:{port}", *PERSON_FLAGS)
        assert plaintext.returncode == 3 and "Traceback" not in plaintext.stderr
    finally:
        front.stop(grace=None)


# --- Many people ------------------------------------------------------------------------------------


def test_batch_csv_of_1200_rows_with_bad_rows(server, tmp_path):
    columns = list(PERSON)
    rows, bad = [], {}  # bad: CSV line number -> why
    for i in range(1200):
        born = BORN + dt.timedelta(days=i // 500)  # sequence numbers 1..500 per birth date
        row = {**PERSON, "id_number": id_number("330102", born, i % 500 + 1), "birth_date": born.isoformat()}
        if i % 2:  # an ordinary household without a disability certificate: nothing to pay
            row.update(
                household_status="ordinary",
                disability_grade="",
                disability_category="",
                long_term_care_need="",
                self_care="",
            )
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

    result = run("batch", "--address", server.address, "--input", str(source), "--output", str(target))

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    with target.open(newline="", encoding="utf-8-sig") as handle:
        out = list(csv.DictReader(handle))
    assert len(out) == len(rows)
    assert [r["line"] for r in out] == [str(i + 2) for i in range(len(rows))]
    assert [r["ref"] for r in out] == [r["ref"] for r in rows]
    assert {int(r["line"]) for r in out if r["status"] == "error"} == set(bad)
    assert all(r["error"] for r in out if r["status"] == "error")

    reported = {int(n) for n in re.findall(r"^第 (\d+) 行", result.stderr, re.MULTILINE)}
    assert reported == set(bad)
    assert not any(r["id_number"] in result.stderr for r in rows), "an ID number reached stderr"

    paying = [r for r in out if r["status"] == "ok" and int(r["line"]) % 2 == 0]
    assert paying and all(
        r[f"{NURSING}_outcome"] == "eligible"
        and r[f"{NURSING}_monthly_yuan"] == "540.00"
        and r[f"{LIVING}_monthly_yuan"] == "324.00"
        and r["total_monthly_yuan"] == "864.00"
        for r in paying
    )
    ok = len(rows) - len(bad)
    assert f"共 {len(rows)} 行：成功 {ok} 行，出错 {len(bad)} 行" in result.stdout
    nursing_total = f"{len(paying) * 540:,}.00"
    nursing_line = next(line for line in result.stdout.splitlines() if nursing_total in line)
    assert f" {len(paying)} " in nursing_line
    assert f"{len(paying) * 864:,}.00" in result.stdout


def test_batch_refuses_a_misspelt_column_or_a_missing_header(tmp_path):
    source = tmp_path / "people.csv"
    source.write_text("ref,id_numbr\n1,x\n", encoding="utf-8")
    result = run(
        "batch",
        "--address",
        f"127.0.0.1:{free_port()}",
        "-i",
        str(source),
        "-o",
        str(tmp_path / "out.csv"),
        "--lang",
        "en",
    )
    assert result.returncode == 2 and "id_numbr" in result.stderr

    source.write_text(",".join(PERSON.values()) + "\n", encoding="utf-8")  # data where the header belongs
    result = run("batch", "-i", str(source), "-o", str(tmp_path / "out.csv"), "--lang", "en")
    assert result.returncode == 2 and "first line must name the columns" in result.stderr
    assert PERSON["id_number"] not in result.stderr


# --- Reading facts, without a server ----------------------------------------------------------------


@pytest.mark.parametrize(("yuan", "fen"), [("1500", 150000), ("0.1", 10), ("1080.55", 108055), (1500.1, 150010)])
def test_yuan_to_fen_is_exact(yuan, fen):
    assert caseworker.yuan_to_fen(yuan) == fen


@pytest.mark.parametrize("yuan", ["12.345", "abc", "NaN", True])
def test_yuan_to_fen_refuses_what_is_not_money(yuan):
    with pytest.raises(caseworker.ClientError):
        caseworker.yuan_to_fen(yuan)


def test_fen_to_yuan():
    assert caseworker.fen_to_yuan(54000) == "540.00"
    assert caseworker.fen_to_yuan(123456789, grouped=True) == "1,234,567.89"


def test_every_enum_short_name_maps_back_to_its_value():
    for enum_desc in pb.DESCRIPTOR.enum_types_by_name.values():
        for name in caseworker.short_names(enum_desc):
            assert caseworker.short_name(enum_desc, caseworker.enum_number(enum_desc, name)) == name
    assert caseworker.enum_number(pb.HouseholdStatus.DESCRIPTOR, "dibao-edge") == pb.HOUSEHOLD_STATUS_DIBAO_EDGE
    with pytest.raises(caseworker.ClientError):
        caseworker.enum_number(pb.HouseholdStatus.DESCRIPTOR, "unspecified")


def test_build_request_maps_flat_names_onto_person():
    request = caseworker.build_request(
        {
            **PERSON,
            "birth_date": BORN,
            "own_income_yuan": "800.50",
            "capacity_level": "mild_loss",
            "capacity_assessed_on": dt.date(2020, 3, 1),
            "other_benefits": "work_injury_nursing_allowance",
            "in_institutional_care": "否",
            "programs": "disability_nursing_subsidy,disability_living_allowance",
        }
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
