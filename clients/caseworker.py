"""Caseworker client of the subsidy-eligibility service: one person as a readable letter, or a CSV batch.

Person facts come from flags, a YAML/JSON file or CSV columns, all with the same flat names (see
`check --help`). Short enum names such as `dibao_edge` are read off the proto enum descriptors, so
a value added to the .proto needs no change here. Money is read in yuan and shown in yuan, exactly
(Decimal to and from the API's integer fen), never through float.

The client logs no personal data: errors name the field and the CSV line, never the value.
"""

import csv
import datetime as dt
import enum
import json
import os
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

# gRPC's C core logs TLS handshake details to stderr at INFO; caseworkers get our one-line message instead.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc  # noqa: E402  (after GRPC_VERBOSITY, which the C core reads once)
import typer
import yaml
from google.protobuf import json_format
from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from clients import channel as channels
from service.api import eligibility_pb2 as pb
from service.api import eligibility_pb2_grpc as pb_grpc


class ExitCode(enum.IntEnum):
    OK = 0
    ROW_ERRORS = 1
    BAD_INPUT = 2  # click's own usage errors exit 2 as well
    UNREACHABLE = 3
    SERVER_ERROR = 4


EXIT_CODES_HELP = (
    "Exit codes: 0 all decided; 1 some batch rows had errors (listed on stderr and in the output CSV); "
    "2 bad usage or input, including input the service refused; 3 service unreachable or too slow; "
    "4 any other service error."
)

# Interface words only. Programme names, reasons and citations come from the service in both languages.
TEXT = {
    "zh": {
        "program": "项目",
        "decision": "结论",
        "monthly": "每月金额（元）",
        "total": "合计",
        "eligible": "符合",
        "ineligible": "不符合",
        "undetermined": "无法判定",
        "condition_passed": "满足",
        "condition_failed": "不满足",
        "exclusion_passed": "排除",
        "exclusion_failed": "不排除",
        "other_passed": "适用",
        "other_failed": "不适用",
        "unknown": "缺少信息",
        "missing": "缺少",
        "interaction": "衔接",
        "reason": "理由",
        "citation": "依据",
        "referrals": "转介建议",
        "region": "户籍地",
        "date": "评估日期",
        "version": "政策版本",
        "compared": "金额",
        "kept": "保留",
        "heading": "{program}：{outcome}，每月 {amount} 元",
        "rows": "共 {rows} 行：成功 {ok} 行，出错 {errors} 行",
        "progress": "评估中",
        "line": "第 {line} 行：{error}",
        "choices": "应为以下之一：{choices}",
        "bool": "应为 是/否（yes/no）",
        "int": "应为整数",
        "money": "应为以元计的金额，最多两位小数",
        "unknown_fields": "无法识别的字段：{fields}（字段名见 --help）",
        "extra_values": "本行的值比列名多",
        "no_header": "第一行应为列名（id_number,region_code,...），而不是数据",
        "not_mapping": "{path} 应为“字段: 值”形式的 YAML/JSON",
        "unreadable": "无法读取 {path}：{detail}",
        "syntax": "{path} 第 {line} 行格式有误",
        "cert_pair": "--client-cert 与 --client-key 须同时提供",
        "unreachable": "无法连接评估服务 {address}，或服务未及时应答（{code}）。"
        "请检查 --address / SUBSIDY_ADDRESS，并确认服务已启动。",
        "refused": "评估服务拒绝了输入（{code}）：{detail}",
        "server": "评估服务出错（{code}）：{detail}",
        "order": "评估服务的应答与请求对不上：应为第 {want} 条，收到 {got}",
    },
    "en": {
        "program": "Program",
        "decision": "Decision",
        "monthly": "Monthly (yuan)",
        "total": "Total",
        "eligible": "eligible",
        "ineligible": "not eligible",
        "undetermined": "undetermined",
        "condition_passed": "met",
        "condition_failed": "not met",
        "exclusion_passed": "excludes",
        "exclusion_failed": "does not exclude",
        "other_passed": "applies",
        "other_failed": "does not apply",
        "unknown": "fact missing",
        "missing": "missing",
        "interaction": "interaction",
        "reason": "Reason",
        "citation": "Source",
        "referrals": "Referrals",
        "region": "Region",
        "date": "Evaluated on",
        "version": "Policy version",
        "compared": "amounts",
        "kept": "kept",
        "heading": "{program}: {outcome}, {amount} yuan a month",
        "rows": "{rows} rows: {ok} decided, {errors} with errors",
        "progress": "Evaluating",
        "line": "line {line}: {error}",
        "choices": "expected one of: {choices}",
        "bool": "expected yes or no",
        "int": "expected a whole number",
        "money": "expected an amount in yuan with at most two decimals",
        "unknown_fields": "unknown fields: {fields} (see --help for the names)",
        "extra_values": "more values than column names",
        "no_header": "the first line must name the columns (id_number,region_code,...), not hold data",
        "not_mapping": "{path} must be YAML/JSON of 'field: value'",
        "unreadable": "cannot read {path}: {detail}",
        "syntax": "{path}: bad syntax at line {line}",
        "cert_pair": "--client-cert and --client-key go together",
        "unreachable": "cannot reach the eligibility service at {address}, "
        "or it did not answer in time ({code}). "
        "Check --address / SUBSIDY_ADDRESS and that the service is running.",
        "refused": "the service refused the input ({code}): {detail}",
        "server": "the eligibility service failed ({code}): {detail}",
        "order": "the service's answers do not match the requests: expected item {want}, got {got}",
    },
}


class Lang(enum.StrEnum):
    zh = "zh"
    en = "en"


class ClientError(Exception):
    """A failure shown to the user as one line; `key` and `params` pick the text in their language."""

    def __init__(self, exit_code: ExitCode, key: str, **params: object) -> None:
        super().__init__(key)
        self.exit_code, self.key, self.params = exit_code, key, params

    def text(self, lang: str) -> str:
        return TEXT[lang][self.key].format(**self.params)


def bad_input(key: str, **params: object) -> ClientError:
    return ClientError(ExitCode.BAD_INPUT, key, **params)


class FieldErrors(ClientError):
    """Every bad field of one person at once, as the service does, so one pass fixes a row."""

    def __init__(self, errors: dict[str, ClientError]) -> None:
        super().__init__(ExitCode.BAD_INPUT, "fields")
        self.errors = errors

    def text(self, lang: str) -> str:
        return "; ".join(f"{name}: {error.text(lang)}" for name, error in self.errors.items())


# --- Enums: short names from the descriptors --------------------------------------------------------


def _value_prefix(enum_desc: EnumDescriptor) -> str:
    # buf's STANDARD lint makes every value carry its enum's name: HouseholdStatus -> HOUSEHOLD_STATUS_.
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum_desc.name).upper() + "_"


def short_names(enum_desc: EnumDescriptor) -> list[str]:
    prefix = _value_prefix(enum_desc)
    return [v.name.removeprefix(prefix).lower() for v in enum_desc.values if v.number != 0]


def short_name(enum_desc: EnumDescriptor, number: int) -> str:
    return enum_desc.values_by_number[number].name.removeprefix(_value_prefix(enum_desc)).lower()


def enum_number(enum_desc: EnumDescriptor, text: object) -> int:
    """`dibao_edge`, `dibao-edge` or `HOUSEHOLD_STATUS_DIBAO_EDGE` -> 2; UNSPECIFIED is never a choice."""
    name = str(text).strip().upper().replace("-", "_")
    prefix = _value_prefix(enum_desc)
    value = enum_desc.values_by_name.get(name if name.startswith(prefix) else prefix + name)
    if value is None or value.number == 0:
        raise bad_input("choices", choices=", ".join(short_names(enum_desc)))
    return value.number


def _choice_type(enum_type) -> type[enum.Enum]:
    """A Python enum of the short names, so --help lists the choices and click rejects others."""
    names = short_names(enum_type.DESCRIPTOR)
    return enum.Enum(enum_type.DESCRIPTOR.name, {n: n for n in names}, type=str)


HouseholdChoice = _choice_type(pb.HouseholdStatus)
CategoryChoice = _choice_type(pb.DisabilityCategory)
CapacityChoice = _choice_type(pb.CapacityLevel)
SelfCareChoice = _choice_type(pb.SelfCare)
ChildChoice = _choice_type(pb.ChildStatus)
BenefitChoice = _choice_type(pb.Benefit)


# --- Person facts: flat names onto the Person message -----------------------------------------------

# Flags, file keys and CSV columns stay one level deep: a nested message's fields get a short prefix.
_NESTED_PREFIX = {"capacity_assessment": "capacity"}
REQUEST_KEYS = ("as_of", "programs")


def _person_keys() -> dict[str, tuple[FieldDescriptor, ...]]:
    """Input name -> path of fields in Person, e.g. disability_grade -> (disability, grade)."""
    keys: dict[str, tuple[FieldDescriptor, ...]] = {}
    for field in pb.Person.DESCRIPTOR.fields:
        if field.message_type is not None:
            prefix = _NESTED_PREFIX.get(field.name, field.name)
            keys.update({f"{prefix}_{sub.name}": (field, sub) for sub in field.message_type.fields})
        elif field.name.endswith("_fen"):
            keys[field.name.removesuffix("_fen") + "_yuan"] = (field,)  # people write yuan, the API counts fen
        else:
            keys[field.name] = (field,)
    return keys


PERSON_KEYS = _person_keys()

_TRUE = {"true", "yes", "y", "1", "是", "有"}
_FALSE = {"false", "no", "n", "0", "否", "无"}


def yuan_to_fen(value: object) -> int:
    if isinstance(value, bool):
        raise bad_input("money")
    try:
        # str() first: a YAML float such as 1500.1 then becomes exactly Decimal("1500.1").
        fen = Decimal(str(value).strip()) * 100
    except InvalidOperation:
        raise bad_input("money") from None
    if not fen.is_finite() or fen != fen.to_integral_value():
        raise bad_input("money")
    return int(fen)


def fen_to_yuan(fen: int, grouped: bool = False) -> str:
    amount = Decimal(fen).scaleb(-2)
    return f"{amount:,.2f}" if grouped else f"{amount:.2f}"


def _scalar(field: FieldDescriptor, value: object) -> object:
    if isinstance(value, enum.Enum):  # a choice flag
        value = value.value
    if field.enum_type is not None:
        return enum_number(field.enum_type, value)
    if field.type == FieldDescriptor.TYPE_BOOL:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise bad_input("bool")
    if field.name.endswith("_fen"):
        return yuan_to_fen(value)
    if field.cpp_type in (FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_INT64):
        if isinstance(value, bool) or not re.fullmatch(r"\s*-?\d+\s*", str(value)):
            raise bad_input("int")
        return int(value)
    if isinstance(value, dt.date):  # YAML reads an unquoted 1970-05-05 as a date
        return value.isoformat()
    return str(value).strip()


def _list(value: object) -> list:
    """A list from YAML, a repeated flag, or one CSV cell separated by commas, semicolons or spaces."""
    if isinstance(value, (list, tuple)):
        return list(value)
    return [part for part in re.split(r"[,;\s]+", str(value)) if part]


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value in ([], ())


def check_names(names: Iterable[object], allowed: Iterable[str], not_names: str = "unknown_fields") -> None:
    """Refuse unknown names: a misspelt one would silently drop a fact."""
    allowed = set(allowed)
    unknown = [str(name) for name in names if name not in allowed]
    if any(not re.fullmatch(r"[A-Za-z_][\w ]{0,40}", name) for name in unknown):
        # Not names at all, most likely data (a CSV without its header row): quoting it would print personal data.
        raise bad_input(not_names, fields="…")
    if unknown:
        raise bad_input("unknown_fields", fields=", ".join(unknown))


def build_request(data: Mapping[str, object]) -> pb.EvaluateRequest:
    """One EvaluateRequest from flat names; raises FieldErrors naming every bad field."""
    check_names(data, [*PERSON_KEYS, *REQUEST_KEYS])
    person, errors = pb.Person(), {}
    for key, value in data.items():
        if key in REQUEST_KEYS or _blank(value):
            continue
        *parents, field = PERSON_KEYS[key]
        target = person
        for parent in parents:  # setting a field of person.disability is what makes it present
            target = getattr(target, parent.name)
        try:
            if field.is_repeated:
                getattr(target, field.name).extend(_scalar(field, v) for v in _list(value))
            else:
                setattr(target, field.name, _scalar(field, value))
        except ClientError as error:
            errors[key] = error
    if errors:
        raise FieldErrors(errors)
    as_of = data.get("as_of")
    return pb.EvaluateRequest(
        person=person,
        as_of="" if _blank(as_of) else _scalar(pb.EvaluateRequest.DESCRIPTOR.fields_by_name["as_of"], as_of),
        programs=[] if _blank(data.get("programs")) else [str(p) for p in _list(data["programs"])],
    )


def load_person_file(path: Path) -> dict[str, object]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: files saved by Windows editors start with a BOM
    except (OSError, UnicodeDecodeError) as error:
        raise bad_input(
            "unreadable", path=path, detail=getattr(error, "strerror", None) or type(error).__name__
        ) from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as error:
        raise bad_input("syntax", path=path, line=error.lineno) from None
    except yaml.YAMLError as error:
        # Only the position: yaml's own message quotes the offending line, which may hold an ID number.
        mark = getattr(error, "problem_mark", None)
        raise bad_input("syntax", path=path, line=mark.line + 1 if mark else "?") from None
    if not isinstance(data, dict):
        raise bad_input("not_mapping", path=path)
    return data


# --- Talking to the service -------------------------------------------------------------------------


def _read_bytes(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as error:
        raise bad_input("unreadable", path=path, detail=error.strerror) from None


def open_channel(
    address: str, tls: bool, ca_cert: Path | None, client_cert: Path | None, client_key: Path | None
) -> grpc.Channel:
    if not tls:
        return channels.open_channel(address)
    if (client_cert is None) != (client_key is None):
        raise bad_input("cert_pair")
    files = channels.TlsFiles(_read_bytes(ca_cert), _read_bytes(client_cert), _read_bytes(client_key))
    return channels.open_channel(address, files)


_UNREACHABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
# Codes the service uses for requests it cannot decide as asked: bad fields, unknown ids or regions,
# dates outside every policy period.
_REFUSED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.FAILED_PRECONDITION,
}


def _field_violations(error: grpc.RpcError) -> list[str]:
    try:
        status = rpc_status.from_call(error)
    except ValueError:  # status details inconsistent with the call: fall back to the plain message
        return []
    violations = []
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations += [f"{v.field}: {v.description}" for v in bad_request.field_violations]
    return violations


def rpc_failure(error: grpc.RpcError, address: str) -> ClientError:
    code = error.code()
    if code in _UNREACHABLE:
        return ClientError(ExitCode.UNREACHABLE, "unreachable", address=address, code=code.name)
    detail = "; ".join(_field_violations(error)) or error.details() or ""
    if code in _REFUSED:
        return ClientError(ExitCode.BAD_INPUT, "refused", code=code.name, detail=detail)
    return ClientError(ExitCode.SERVER_ERROR, "server", code=code.name, detail=detail)


@contextmanager
def reporting(lang: str, address: str):
    """Turn every expected failure into one line on stderr and its exit code: never a traceback."""
    try:
        yield
    except grpc.RpcError as error:
        failure = rpc_failure(error, address)
        print(failure.text(lang), file=sys.stderr)
        raise typer.Exit(failure.exit_code) from None
    except ClientError as failure:
        print(failure.text(lang), file=sys.stderr)
        raise typer.Exit(failure.exit_code) from None


# --- Showing a decision -----------------------------------------------------------------------------


def _in(message, field: str, lang: str) -> str:
    """The text in the chosen language, or the other one when the service left it empty."""
    other = "en" if lang == "zh" else "zh"
    return getattr(message, f"{field}_{lang}") or getattr(message, f"{field}_{other}")


def _outcome(number: int) -> str:
    return short_name(pb.Outcome.DESCRIPTOR, number)


def _mark(reason: pb.Reason, t: dict[str, str]) -> str:
    """How a rule came out, in words that fit its kind: a failed exclusion is good news, not a failure."""
    result = short_name(pb.RuleResult.DESCRIPTOR, reason.result)
    if result not in ("passed", "failed"):
        return t["unknown"]
    kind = reason.kind if reason.kind in ("condition", "exclusion") else "other"  # route, adjustment
    return t[f"{kind}_{result}"]


def render_decision(reply: pb.EvaluateResponse, lang: str, out: Console) -> None:
    t = TEXT[lang]
    names = {d.program_id: _in(d, "name", lang) for d in reply.decisions}
    out.print(
        f"{t['region']}: {_in(reply.region, 'name', lang)} ({reply.region.code})    "
        f"{t['date']}: {reply.evaluation_date}",
        highlight=False,
    )
    out.print(f"{t['version']}: {reply.policy_version}", highlight=False)

    overview = Table(show_footer=True)
    overview.add_column(t["program"], footer=t["total"])
    overview.add_column(t["decision"])
    overview.add_column(t["monthly"], justify="right", footer=fen_to_yuan(reply.total_monthly_amount.fen, True))
    for d in reply.decisions:
        overview.add_row(names[d.program_id], t[_outcome(d.outcome)], fen_to_yuan(d.monthly_amount.fen, True))
    out.print(overview)

    for d in reply.decisions:
        # Headings as lines of their own: a table title cannot be wider than its table and would wrap.
        out.print()
        out.print(
            t["heading"].format(
                program=names[d.program_id],
                outcome=t[_outcome(d.outcome)],
                amount=fen_to_yuan(d.monthly_amount.fen, True),
            ),
            style="bold",
            highlight=False,
        )
        table = Table()
        table.add_column("")
        # fold, not the default ellipsis: Chinese text has no spaces to wrap at and would be cut off.
        table.add_column(t["reason"], overflow="fold")
        table.add_column(t["citation"], overflow="fold")
        for r in d.reasons:
            table.add_row(_mark(r, t), _in(r, "text", lang), r.citation)
        for m in d.missing_facts:
            table.add_row(t["missing"], _in(m, "label", lang), m.rule_id)
        for i in d.interactions:
            compared = ", ".join(
                f"{names.get(p, p)} {fen_to_yuan(a.fen, True)}" for p, a in zip(i.programs, i.amounts, strict=False)
            )
            kept = f"; {t['kept']} {names.get(i.kept_program, i.kept_program)}" if i.kept_program else ""
            table.add_row(t["interaction"], f"{_in(i, 'text', lang)} ({t['compared']}: {compared}{kept})", i.citation)
        out.print(table)

    if reply.referrals:
        out.print()
        out.print(t["referrals"], style="bold")
        table = Table()
        table.add_column(t["reason"], overflow="fold")
        table.add_column(t["citation"], overflow="fold")
        for r in reply.referrals:
            table.add_row(_in(r, "text", lang), r.citation)
        out.print(table)


# --- The commands -----------------------------------------------------------------------------------

app = typer.Typer(
    help="Check what a person qualifies for with the subsidy-eligibility service.\n\n" + EXIT_CODES_HELP,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

_CONN = "Service connection"
_PERSON = "Person"
AddressOpt = Annotated[
    str, typer.Option(envvar="SUBSIDY_ADDRESS", help="host:port of the service.", rich_help_panel=_CONN)
]
TlsOpt = Annotated[
    bool, typer.Option(envvar="SUBSIDY_TLS", help="Use TLS (when the service does).", rich_help_panel=_CONN)
]
CaOpt = Annotated[
    Path | None, typer.Option(envvar="SUBSIDY_CA_CERT", help="CA certificate (PEM) for --tls.", rich_help_panel=_CONN)
]
CertOpt = Annotated[
    Path | None, typer.Option(envvar="SUBSIDY_CLIENT_CERT", help="Client certificate (PEM).", rich_help_panel=_CONN)
]
KeyOpt = Annotated[
    Path | None, typer.Option(envvar="SUBSIDY_CLIENT_KEY", help="Client private key (PEM).", rich_help_panel=_CONN)
]
TimeoutOpt = Annotated[
    float, typer.Option(envvar="SUBSIDY_TIMEOUT", help="Seconds to wait for one answer.", rich_help_panel=_CONN)
]
LangOpt = Annotated[Lang, typer.Option(help="Language of the labels: zh (中文) or en.")]


def _flag(help: str, *names: str, choice=str, repeat: bool = False):
    return Annotated[
        list[choice] | None if repeat else choice | None,
        typer.Option(*names, help=help, rich_help_panel=_PERSON, case_sensitive=False),
    ]


@app.command(epilog=EXIT_CODES_HELP)
def check(
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            exists=True,
            dir_okay=False,
            help="YAML or JSON file of the person's facts, one 'name: value' per fact; names: "
            + ", ".join([*PERSON_KEYS, *REQUEST_KEYS])
            + ". Flags given as well override it.",
        ),
    ] = None,
    id_number: _flag("18-character resident ID number.") = None,
    birth_date: _flag("Birth date, YYYY-MM-DD.") = None,
    region_code: _flag("Current household registration region (GB/T 2260), e.g. 330102.", "--region") = None,
    household_status: _flag("Household economic status.", "--household", choice=HouseholdChoice) = None,
    household_income_per_head_yuan: _flag("Monthly household income per head, yuan.", "--household-income") = None,
    own_income_yuan: _flag("The person's own monthly income, yuan.", "--own-income") = None,
    disability_grade: _flag("Disability certificate grade, 1 (most severe) to 4.", choice=int) = None,
    disability_category: _flag("Disability category.", choice=CategoryChoice) = None,
    long_term_care_need: _flag(
        "Needs help in daily life for 6 months or more.", "--long-term-care-need/--no-long-term-care-need", choice=bool
    ) = None,
    self_care: _flag("Self-care tier for the nursing subsidy.", choice=SelfCareChoice) = None,
    in_institutional_care: _flag(
        "Lives in approved institutional care.", "--in-institutional-care/--not-in-institutional-care", choice=bool
    ) = None,
    capacity_level: _flag("Elderly capacity assessment result.", choice=CapacityChoice) = None,
    capacity_assessed_on: _flag("Date of that assessment, YYYY-MM-DD.") = None,
    child_status: _flag("A minor's care situation.", choice=ChildChoice) = None,
    in_full_time_education: _flag(
        "In full-time education up to undergraduate level.",
        "--in-full-time-education/--not-in-full-time-education",
        choice=bool,
    ) = None,
    serious_illness: _flag("Has a serious illness.", "--serious-illness/--no-serious-illness", choice=bool) = None,
    depends_on_family_support: _flag(
        "Depends on family support.", "--depends-on-family-support/--no-family-support", choice=bool
    ) = None,
    other_benefits: _flag(
        "Another benefit already received (repeatable).", "--other-benefit", choice=BenefitChoice, repeat=True
    ) = None,
    as_of: _flag("Evaluation date, YYYY-MM-DD (default today).") = None,
    programs: _flag("Decide only this program id (repeatable; default all).", "--program", repeat=True) = None,
    lang: LangOpt = Lang.zh,
    json_output: Annotated[bool, typer.Option("--json", help="Print the service's reply as JSON.")] = False,
    address: AddressOpt = "localhost:50051",
    tls: TlsOpt = False,
    ca_cert: CaOpt = None,
    client_cert: CertOpt = None,
    client_key: KeyOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Decide for one person, from flags or a YAML/JSON file: a table per program with reasons."""
    flags = {
        "id_number": id_number,
        "birth_date": birth_date,
        "region_code": region_code,
        "household_status": household_status,
        "household_income_per_head_yuan": household_income_per_head_yuan,
        "own_income_yuan": own_income_yuan,
        "disability_grade": disability_grade,
        "disability_category": disability_category,
        "long_term_care_need": long_term_care_need,
        "self_care": self_care,
        "in_institutional_care": in_institutional_care,
        "capacity_level": capacity_level,
        "capacity_assessed_on": capacity_assessed_on,
        "child_status": child_status,
        "in_full_time_education": in_full_time_education,
        "serious_illness": serious_illness,
        "depends_on_family_support": depends_on_family_support,
        "other_benefits": other_benefits,
        "as_of": as_of,
        "programs": programs,
    }
    with reporting(lang.value, address):
        facts = load_person_file(file) if file else {}
        facts.update({key: value for key, value in flags.items() if not _blank(value)})
        request = build_request(facts)
        with open_channel(address, tls, ca_cert, client_cert, client_key) as channel:
            reply = pb_grpc.EligibilityServiceStub(channel).Evaluate(request, timeout=timeout)
    if json_output:
        print(json_format.MessageToJson(reply, ensure_ascii=False))
    else:
        render_decision(reply, lang.value, Console())


def read_rows(path: Path) -> list[tuple[int, str, pb.EvaluateRequest | ClientError]]:
    """(line number, ref, request or the reason it could not be built) for every data row."""
    rows = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            check_names(reader.fieldnames or (), [*PERSON_KEYS, *REQUEST_KEYS, "ref"], "no_header")
            for record in reader:
                ref = (record.pop("ref", None) or "").strip()
                try:
                    if record.pop(None, None) is not None:
                        raise bad_input("extra_values")
                    rows.append((reader.line_num, ref, build_request(record)))
                except ClientError as error:
                    rows.append((reader.line_num, ref, error))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise bad_input("unreadable", path=path, detail=getattr(error, "strerror", None) or str(error)) from None
    return rows


def _batch_error_text(error: pb.BatchError) -> str:
    fields = "; ".join(f"{e.field}: {e.description}" for e in error.field_errors)
    return f"{error.code}: {fields or error.message}"


def answers(rows, responses, lang: str) -> Iterator[tuple[int, str, str | None, pb.EvaluateResponse | None]]:
    """(line, ref, problem, reply) for every row, in order. Rows that could not be parsed were not sent,
    so they take no answer from the stream; the service answers the others in order, by index."""
    sent = 0
    for line, ref, request in rows:
        if isinstance(request, ClientError):
            yield line, ref, request.text(lang), None
            continue
        answer = next(responses, None)
        if answer is None or answer.index != sent:
            raise ClientError(ExitCode.SERVER_ERROR, "order", want=sent, got=getattr(answer, "index", "-"))
        sent += 1
        if answer.HasField("error"):
            yield line, ref, _batch_error_text(answer.error), None
        else:
            yield line, ref, None, answer.response
    for _ in responses:  # to the end of the stream, so that a failure after the last answer still shows
        pass


def summary_table(programs, people: dict[str, Counter], paid: Counter, rows: int, errors: int, lang: str) -> Table:
    """Per program: people by outcome and the monthly total in yuan."""
    t = TEXT[lang]
    outcomes = [v.number for v in pb.Outcome.DESCRIPTOR.values if v.number != 0]
    table = Table(title=t["rows"].format(rows=rows, ok=rows - errors, errors=errors), show_footer=True)
    table.add_column(t["program"], footer=t["total"])
    for number in outcomes:
        table.add_column(t[_outcome(number)], justify="right")
    table.add_column(t["monthly"], justify="right", footer=fen_to_yuan(sum(paid.values()), True))
    for p in programs:
        table.add_row(
            _in(p, "name", lang),
            *(str(people[p.program_id][n]) for n in outcomes),
            fen_to_yuan(paid[p.program_id], True),
        )
    return table


@app.command(epilog=EXIT_CODES_HELP)
def batch(
    input: Annotated[
        Path,
        typer.Option(
            "--input",
            "-i",
            exists=True,
            dir_okay=False,
            help="CSV with a header row of the person fields (as in `check --file`) plus optional ref and as_of.",
        ),
    ],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", dir_okay=False, help="CSV to write: one result row per input row, same order."),
    ],
    lang: LangOpt = Lang.zh,
    address: AddressOpt = "localhost:50051",
    tls: TlsOpt = False,
    ca_cert: CaOpt = None,
    client_cert: CertOpt = None,
    client_key: KeyOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Decide for every row of a CSV: one output row per input row, bad rows reported by line number."""
    t = TEXT[lang.value]
    with reporting(lang.value, address):
        rows = read_rows(input)
        with open_channel(address, tls, ca_cert, client_cert, client_key) as channel:
            stub = pb_grpc.EligibilityServiceStub(channel)
            # Asked first so that an unreachable service fails fast, before any output is written.
            programs = stub.ListPrograms(pb.ListProgramsRequest(), timeout=timeout).programs
            people, paid = defaultdict(Counter), Counter()  # program -> outcome -> people; program -> fen
            columns = ["line", "ref", "status", "error"]
            for p in programs:
                columns += [f"{p.program_id}_outcome", f"{p.program_id}_monthly_yuan"]
            responses = stub.EvaluateBatch(
                pb.EvaluateBatchRequest(ref=ref, request=request)
                for _, ref, request in rows
                if isinstance(request, pb.EvaluateRequest)
            )
            errors = 0
            # utf-8-sig: spreadsheet programs on Windows read the Chinese error texts right only with a BOM.
            with (
                output.open("w", newline="", encoding="utf-8-sig") as handle,
                Progress(
                    TextColumn(t["progress"]),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    console=Console(stderr=True),
                ) as progress,
            ):
                writer = csv.DictWriter(handle, [*columns, "total_monthly_yuan"], extrasaction="ignore")
                writer.writeheader()
                task = progress.add_task("", total=len(rows))
                for line, ref, problem, reply in answers(rows, responses, lang.value):
                    if problem:
                        errors += 1
                        writer.writerow({"line": line, "ref": ref, "status": "error", "error": problem})
                        progress.console.print(
                            t["line"].format(line=line, error=problem), markup=False, highlight=False, soft_wrap=True
                        )  # one grep-able line
                    else:
                        row = {
                            "line": line,
                            "ref": ref,
                            "status": "ok",
                            "total_monthly_yuan": fen_to_yuan(reply.total_monthly_amount.fen),
                        }
                        for d in reply.decisions:
                            row[f"{d.program_id}_outcome"] = _outcome(d.outcome)
                            row[f"{d.program_id}_monthly_yuan"] = fen_to_yuan(d.monthly_amount.fen)
                            people[d.program_id][d.outcome] += 1
                            paid[d.program_id] += d.monthly_amount.fen
                        writer.writerow(row)
                    progress.advance(task)
    Console().print(summary_table(programs, people, paid, len(rows), errors, lang.value))
    raise typer.Exit(ExitCode.ROW_ERRORS if errors else ExitCode.OK)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
