"""A person's facts, by flat names, onto the service's Person message.

Flags, YAML/JSON keys and table columns use the same flat names (`disability_grade`, not
`disability.grade`). Values are read as offices write them: short enum names or their Chinese
labels from the policy files (低保, 重度失能), yes/no or 是/否, dates as 2010-10-22, 2010/10/22,
2010年10月22日 or an Excel serial date, amounts in yuan with thousands separators. Money stays
exact (Decimal to integer fen), never float.

Errors name the field, never the value: a value may be an ID number.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import yaml
from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor

from clients.texts import ClientError, FieldErrors, bad_input
from service.api import eligibility_pb2 as pb

if TYPE_CHECKING:
    from google._upb import _message as upb

    # The stubs type a message's fields as either protobuf backend's (pure Python or upb).
    Field: TypeAlias = FieldDescriptor | upb.FieldDescriptor
    EnumType: TypeAlias = EnumDescriptor | upb.EnumDescriptor

# --- Enums: short names from the descriptors, Chinese labels from the policy files ------------------


def _value_prefix(enum_desc: EnumType) -> str:
    # buf's STANDARD lint makes every value carry its enum's name: HouseholdStatus -> HOUSEHOLD_STATUS_.
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum_desc.name).upper() + "_"


def short_names(enum_desc: EnumType) -> list[str]:
    prefix = _value_prefix(enum_desc)
    return [v.name.removeprefix(prefix).lower() for v in enum_desc.values if v.number != 0]


def short_name(enum_desc: EnumType, number: int) -> str:
    return enum_desc.values_by_number[number].name.removeprefix(_value_prefix(enum_desc)).lower()


# libyaml's loader when PyYAML was built with it: the pure-Python one takes about a second for the
# policy files on a busy machine, and a caseworker waits for it on every command.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load_yaml(path: Path) -> object:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)


@functools.cache
def policy_facts() -> dict[str, dict]:
    """facts.yaml of the policies installed with the service: labels of facts and of enum values."""
    from service.__main__ import default_policies  # light: argparse and paths only

    path = Path(default_policies()) / "facts.yaml"
    try:
        return _load_yaml(path)["facts"]  # type: ignore[index]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return {}  # without labels the short English names still work


def _enum_fact(enum_desc: EnumType) -> dict:
    """The policy fact whose values are this enum's short names (household_status for HouseholdStatus)."""
    names = set(short_names(enum_desc))
    for fact in policy_facts().values():
        if isinstance(fact, dict) and set(fact.get("values") or ()) >= names:
            return fact
    return {}


def value_label(enum_desc: EnumType, short: str, lang: str) -> str:
    labels = (_enum_fact(enum_desc).get("values") or {}).get(short) or {}
    return labels.get(lang) or short


def _fold(text: str) -> str:
    """Case, width, spaces, hyphens and underscores ignored: `Dibao-Edge`, `ＤＩＢＡＯ_edge`, ` 低保边缘 `."""
    return re.sub(r"[\s_\-]", "", unicodedata.normalize("NFKC", text)).lower()


@functools.cache
def _enum_lookup(enum_desc: EnumType) -> dict[str, int]:
    lookup: dict[str, int] = {}
    prefix = _value_prefix(enum_desc)
    for value in enum_desc.values:
        if value.number == 0:
            continue
        short = value.name.removeprefix(prefix).lower()
        for spelling in (short, value.name, value_label(enum_desc, short, "zh"), value_label(enum_desc, short, "en")):
            lookup[_fold(spelling)] = value.number
    return lookup


def enum_number(enum_desc: EnumType, text: object) -> int:
    """`dibao_edge`, `Dibao-Edge`, `HOUSEHOLD_STATUS_DIBAO_EDGE` or 低保边缘 -> 2; UNSPECIFIED is never a choice."""
    number = _enum_lookup(enum_desc).get(_fold(str(text)))
    if number is None:
        choices = ", ".join(f"{s}（{value_label(enum_desc, s, 'zh')}）" for s in short_names(enum_desc))
        raise bad_input("choices", choices=choices)
    return number


# --- Names: flat keys, their columns and their flags ---------------------------------------------------

# A nested message's fields get a short prefix, so that every name stays one level deep.
_NESTED_PREFIX = {"capacity_assessment": "capacity"}
REQUEST_KEYS = ("as_of", "programs")
REF = "ref"


def _person_keys() -> dict[str, tuple[Field, ...]]:
    """Input name -> path of fields in Person, e.g. disability_grade -> (disability, grade)."""
    keys: dict[str, tuple[Field, ...]] = {}
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
KEYS = (*PERSON_KEYS, *REQUEST_KEYS)
REQUIRED = ("id_number", "birth_date", "region_code")

# Chinese column names, as offices head their sheets; the first is the one written. English names
# are the keys themselves. Case, width, spaces, hyphens and underscores do not matter (see _fold).
COLUMNS_ZH: dict[str, tuple[str, ...]] = {
    REF: ("编号", "参考号", "案卷号", "业务编号"),
    "id_number": ("身份证号", "身份证号码", "公民身份号码", "证件号码"),
    "birth_date": ("出生日期", "出生年月日"),
    "region_code": ("户籍地区划代码", "户籍地代码", "行政区划代码", "区划代码"),
    "household_status": ("家庭经济状况", "家庭类别", "困难类别"),
    "household_income_per_head_yuan": ("家庭人均月收入（元）", "家庭人均月收入", "家庭人均收入"),
    "own_income_yuan": ("本人月收入（元）", "本人月收入", "个人月收入"),
    "disability_grade": ("残疾等级", "残疾级别"),
    "disability_category": ("残疾类别",),
    "long_term_care_need": ("长期照护需求", "需长期照护"),
    "self_care": ("自理能力",),
    "in_institutional_care": ("入住照护机构", "入住经认定的照护机构", "机构供养"),
    "capacity_level": ("老年人能力评估等级", "能力评估等级", "能力等级"),
    "capacity_assessed_on": ("能力评估日期", "评估时间"),
    "child_status": ("儿童类别", "儿童状况"),
    "in_full_time_education": ("全日制在校", "在校就读"),
    "serious_illness": ("患重病", "重病"),
    "depends_on_family_support": ("依靠家庭供养",),
    "other_benefits": ("已享受其他待遇", "其他待遇"),
    "as_of": ("评估日期",),
    "programs": ("评估项目",),
}

# Flags of `check` for each key: the undetermined message says which one supplies a missing fact.
FLAGS: dict[str, str] = {
    "id_number": "--id-number",
    "birth_date": "--birth-date",
    "region_code": "--region",
    "household_status": "--household",
    "household_income_per_head_yuan": "--household-income",
    "own_income_yuan": "--own-income",
    "disability_grade": "--disability-grade",
    "disability_category": "--disability-category",
    "long_term_care_need": "--long-term-care-need",
    "self_care": "--self-care",
    "in_institutional_care": "--in-institutional-care",
    "capacity_level": "--capacity-level",
    "capacity_assessed_on": "--capacity-assessed-on",
    "child_status": "--child-status",
    "in_full_time_education": "--in-full-time-education",
    "serious_illness": "--serious-illness",
    "depends_on_family_support": "--depends-on-family-support",
    "other_benefits": "--other-benefit",
    "as_of": "--as-of",
    "programs": "--program",
}

# Policy facts that the service derives from another input (the rest share the input's name).
_DERIVED = {
    "has_disability_certificate": "disability_grade",
    "work_injury_nursing_allowance": "other_benefits",
    "age_years": "birth_date",
    "in_zhejiang": "region_code",
    "evaluation_date": "as_of",
}


def key_of_fact(fact: str) -> str | None:
    """The input key that supplies a policy fact (household_income_per_head -> ..._yuan)."""
    for key in (_DERIVED.get(fact), fact, f"{fact}_yuan", f"capacity_{fact}"):
        if key in FLAGS:
            return key
    return None


def key_label(key: str, lang: str) -> str:
    """A key as a caseworker reads it: its Chinese column name, or the key itself in English."""
    return COLUMNS_ZH[key][0] if lang == "zh" and key in COLUMNS_ZH else key


LABELS = {key: {"zh": key_label(key, "zh"), "en": key} for key in KEYS}


@functools.cache
def _column_lookup() -> dict[str, str]:
    lookup = {_fold(key): key for key in (*KEYS, REF)}
    for key, names in COLUMNS_ZH.items():
        lookup.update({_fold(name): key for name in names})
    for fact, spec in policy_facts().items():  # the policy's own labels, e.g. 家庭人均月收入
        fact_key = key_of_fact(fact)
        label: str | None = (spec.get("label") or {}).get("zh") if isinstance(spec, dict) else None
        if fact_key and label and fact_key not in REQUEST_KEYS and fact not in _DERIVED:
            lookup.setdefault(_fold(label), fact_key)
    return lookup


def column_key(name: object) -> str | None:
    """The key a column heading names, or None for a column of the office's own (kept as it is)."""
    return _column_lookup().get(_fold(str(name or "")))


# --- Values -------------------------------------------------------------------------------------------

_TRUE = {"true", "yes", "y", "1", "是", "有", "需要", "√", "✓"}
_FALSE = {"false", "no", "n", "0", "否", "无", "不需要", "×"}
_GRADES = {"一": 1, "二": 2, "三": 3, "四": 4, "1": 1, "2": 2, "3": 3, "4": 4}
_EXCEL_EPOCH = dt.date(1899, 12, 30)  # serial 1 is 1900-01-01 after Excel's 1900 leap-year bug
_SCIENTIFIC = re.compile(r"\d(\.\d+)?[eE]\+?\d+")


def yuan_to_fen(value: object) -> int:
    if isinstance(value, bool):
        raise bad_input("money")
    # Excel writes 1,500.50 (and Chinese keyboards ，); str() first: 1500.1 becomes exactly Decimal("1500.1").
    text = re.sub(r"[,，\s¥￥元]", "", str(value))
    try:
        fen = Decimal(text) * 100
    except InvalidOperation:
        raise bad_input("money") from None
    if not fen.is_finite() or fen != fen.to_integral_value():
        raise bad_input("money")
    return int(fen)


def fen_to_yuan(fen: int, grouped: bool = False) -> str:
    amount = Decimal(fen).scaleb(-2)
    return f"{amount:,.2f}" if grouped else f"{amount:.2f}"


def parse_date(value: object) -> str:
    """YYYY-MM-DD from a date, an Excel serial number, or text written the ways offices write dates."""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    text = unicodedata.normalize("NFKC", str(value)).strip()
    try:
        if re.fullmatch(r"\d{1,5}(\.0+)?", text):  # an Excel serial date that reached a CSV as a number
            serial = int(float(text))
            if serial >= 1:
                return (_EXCEL_EPOCH + dt.timedelta(days=serial)).isoformat()
        if re.fullmatch(r"\d{8}", text):
            return dt.date(int(text[:4]), int(text[4:6]), int(text[6:])).isoformat()
        match = re.fullmatch(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?(\s+[\d:]+)?", text)
        if match:
            return dt.date(*(int(part) for part in match.groups()[:3])).isoformat()
    except (ValueError, OverflowError):
        pass
    raise bad_input("date_value")


def parse_id_number(value: object) -> str:
    """Refuse what Excel did to an 18-digit number: it keeps 15 significant digits and shows 3.30102E+17."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise bad_input("id_as_number", shown=f"{value:.5E}")
    text = str(value).strip()
    if _SCIENTIFIC.fullmatch(text):
        raise bad_input("id_as_number", shown=text)
    return text


def parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = unicodedata.normalize("NFKC", str(value)).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise bad_input("bool")


def parse_int(value: object) -> int:
    if isinstance(value, bool):
        raise bad_input("int")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = unicodedata.normalize("NFKC", str(value)).strip().removesuffix("级")
    if text in _GRADES:
        return _GRADES[text]
    if not re.fullmatch(r"-?\d+(\.0+)?", text):
        raise bad_input("int")
    return int(text.split(".")[0])


def parse_code(value: object) -> str:
    """A region code Excel kept as the number 330102 or 330102.0."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _converter(key: str, field: Field) -> Callable[[object], object]:
    if field.enum_type is not None:
        enum_desc = field.enum_type
        return lambda value: enum_number(enum_desc, value.value if isinstance(value, enum.Enum) else value)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return parse_bool
    if field.name.endswith("_fen"):
        return yuan_to_fen
    if field.cpp_type in (FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_INT64):
        return parse_int
    if key == "id_number":
        return parse_id_number
    if key.endswith("_date") or key.endswith("_on"):
        return parse_date
    if key == "region_code":
        return parse_code
    return lambda value: str(value).strip()


CONVERTERS: dict[str, Callable[[object], object]] = {
    key: _converter(key, path[-1]) for key, path in PERSON_KEYS.items()
}


def split_list(value: object) -> list:
    """A list from YAML, a repeated flag, or one cell separated by commas, semicolons or spaces."""
    if isinstance(value, list | tuple):
        return list(value)
    return [part for part in re.split(r"[,;，；、\s]+", str(value)) if part]


def blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value in ([], ())


def check_names(names: Iterable[object], allowed: Iterable[str]) -> None:
    """Refuse unknown names in a person file: a misspelt one would silently drop a fact."""
    allowed = set(allowed)
    unknown = [str(name) for name in names if name not in allowed]
    if any(not re.fullmatch(r"[A-Za-z_][\w ]{0,40}", name) for name in unknown):
        raise bad_input("unknown_fields", fields="…")  # not names at all: quoting them could print personal data
    if unknown:
        raise bad_input("unknown_fields", fields=", ".join(unknown))


def build_request(data: Mapping[str, object], default_as_of: str = "") -> pb.EvaluateRequest:
    """One EvaluateRequest from flat names; raises FieldErrors naming every bad field.

    A blank or absent as_of is `default_as_of` (the batch's --as-of): never silently today."""
    person = pb.Person()
    errors: dict[str, ClientError] = {}
    as_of = default_as_of
    programs: list[str] = []
    for key, value in data.items():
        if blank(value):
            continue
        try:
            if key == "as_of":
                as_of = parse_date(value)
                continue
            if key == "programs":
                programs = [str(p) for p in split_list(value)]
                continue
            *parents, field = PERSON_KEYS[key]
            target = person
            for parent in parents:  # setting a field of person.disability is what makes it present
                target = getattr(target, parent.name)
            convert = CONVERTERS[key]
            if field.is_repeated:
                getattr(target, field.name).extend(convert(v) for v in split_list(value))
            else:
                setattr(target, field.name, convert(value))
        except ClientError as error:
            errors[key] = error
    if errors:
        raise FieldErrors(errors, LABELS)
    return pb.EvaluateRequest(person=person, as_of=as_of, programs=programs)


@functools.cache
def _parameter_descriptions() -> dict[str, dict[str, str]]:
    from service.__main__ import default_policies

    out: dict[str, dict[str, str]] = {}
    for path in sorted((Path(default_policies()) / "parameters").glob("**/*.yaml")):
        try:
            loaded = _load_yaml(path)
            description = loaded.get("description") if isinstance(loaded, dict) else None
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(description, dict):
            out[path.stem] = description
    return out


_UNITS = {
    "zh": {"yuan_per_month": "元/月", "yuan": "元", "years": "岁", "months": "个月", "ratio": "比率"},
    "en": {"yuan_per_month": "yuan a month"},
}


def parameter_label(name: str, lang: str) -> str:
    """A parameter as the policy files describe it (城乡居民最低生活保障标准), else its id."""
    return _parameter_descriptions().get(name, {}).get(lang) or name


def unit_label(unit: str, lang: str) -> str:
    return _UNITS[lang].get(unit, unit)
