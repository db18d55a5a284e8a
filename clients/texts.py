"""Every word the client itself says, in Chinese and English, and the failures it reports.

Programme names, reasons, citations and labels of facts come from the service or the policy
files; this module holds only the interface's own words. A failure is a `ClientError` with a text
key and its parameters, so the same failure reads right in either language.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Exit codes, documented in the README and in `--help`."""

    OK = 0
    ROW_ERRORS = 1
    BAD_INPUT = 2  # click's own usage errors exit 2 as well
    UNREACHABLE = 3
    SERVER_ERROR = 4
    UNDETERMINED = 5
    INCOMPLETE = 6


EXIT_CODES_HELP = (
    "Exit codes: 0 decided; 1 some batch rows had errors; 2 bad usage or input (also input the service "
    "refused); 3 service unreachable, too slow or refused the connection; 4 other service error; "
    "5 decided, but some program is undetermined for lack of a fact; 6 batch interrupted, output "
    "marked incomplete (continue with --resume)."
)


class Lang(enum.StrEnum):
    zh = "zh"
    en = "en"


TEXT: dict[str, dict[str, str]] = {
    "zh": {
        "program": "项目",
        "decision": "结论",
        "monthly": "每月金额（元）",
        "amount": "每月（元）",
        "total": "合计",
        "eligible": "符合",
        "ineligible": "不符合",
        "undetermined": "无法判定",
        "not_paid": "符合，不发放",
        "not_paid_because": "改发较高的{program}（{amount} 元）",
        "condition_passed": "满足",
        "condition_failed": "不满足",
        "exclusion_passed": "排除",
        "exclusion_failed": "不排除",
        "other_passed": "适用",
        "other_failed": "不适用",
        "unknown": "缺少信息",
        "missing": "缺少",
        "missing_title": "缺少信息（补上后可判定）",
        "colon": "：",
        "missing_supply": "缺少{label}：{how}",
        "supply_flag_column": "用 {flag} 或列“{column}”提供",
        "assumed": "假定{label}为“{value}”，请核实",
        "interaction": "衔接",
        "reason": "理由",
        "citation": "依据",
        "referrals": "转介建议",
        "if_confirmed": "（须核实：{conditions}）",
        "caveats": "提示",
        "region": "户籍地",
        "date": "评估日期",
        "version": "政策版本",
        "request_hash": "请求摘要",
        "compared": "金额",
        "kept": "保留",
        "detail_hint": "全部规则及依据：加 --detail",
        "heading": "{program}：{outcome}，每月 {amount} 元",
        "rows": "共 {rows} 行：成功 {ok} 行，出错 {errors} 行",
        "progress": "评估中",
        "line": "第 {line} 行：{error}",
        "choices": "应为以下之一：{choices}",
        "bool": "应为 是/否（yes/no）",
        "int": "应为整数",
        "money": "应为以元计的金额，最多两位小数",
        "date_value": "应为日期，如 2020-08-01 或 2020/8/1",
        "id_as_number": "身份证号被 Excel 存成了数字（{shown}），末几位已丢失：请在 Excel 中把该列设为“文本”后重新录入",
        "unknown_fields": "无法识别的字段：{fields}（字段名见 --help）",
        "short_row": "本行只有 {got} 个值，而列名有 {want} 个：请补齐（空值也要留出逗号）",
        "extra_values": "本行有 {got} 个值，比列名（{want} 个）多",
        "no_header": "第一行应为列名（如 身份证号,出生日期,户籍地区划代码,…），而不是数据",
        "missing_columns": "缺少必需的列：{columns}{hint}",
        "did_you_mean": "（是否写错了：{names}？）",
        "duplicate_column": "第 {first} 列“{a}”与第 {second} 列“{b}”是同一字段，请删去一列",
        "not_mapping": "{path} 应为“字段: 值”形式的 YAML/JSON",
        "unreadable": "无法读取 {path}：{detail}",
        "encoding": "{path} 不是 UTF-8 或 GB18030 编码的文本；请用 --encoding 指明编码",
        "syntax": "{path} 第 {line} 行格式有误",
        "cert_pair": "--client-cert 与 --client-key 须同时提供",
        "key_mismatch": "--client-key 与 --client-cert 不是一对：请给出签发该证书时用的私钥",
        "unreachable": "无法连接评估服务 {address}，或服务未及时应答（{code}）。"
        "请检查 --address / SUBSIDY_ADDRESS，并确认服务已启动。",
        "tls_to_plaintext": "评估服务 {address} 未启用 TLS，而本机用了 --tls：请去掉 --tls，或请管理员为服务启用 TLS。",
        "plaintext_to_tls": "评估服务 {address} 要求 TLS 连接：请加 --tls 和 --ca-cert（签发服务证书的 CA）。",
        "unknown_ca": "无法验证评估服务 {address} 的证书：请用 --ca-cert 给出签发服务证书的 CA 证书。",
        "cert_required": "评估服务 {address} 要求客户端证书，或不认可所给的证书：请用 --client-cert 和 "
        "--client-key 给出由服务信任的 CA 签发的证书。",
        "not_allowed": "评估服务拒绝了本客户端证书的身份（不在允许名单上）：请管理员把证书的 CN 或 SAN 加入 "
        "--allowed-callers。",
        "refused": "评估服务拒绝了输入：{detail}",
        "server": "评估服务出错（{code}）：{detail}",
        "order": "评估服务的应答与请求对不上：应为第 {want} 条，收到 {got}",
        "same_file": "输出文件与输入文件是同一个文件（{path}）：请另给一个输出文件名",
        "exists": "输出文件 {path} 已存在：加 --force 覆盖，或另给一个文件名",
        "no_directory": "输出目录 {path} 不存在",
        "output_type": "不支持的输出文件类型 {suffix}：{choices}",
        "interrupted": "评估服务中断：已判定 {done} 行，写入 {path}（未完成）。"
        "服务恢复后加 --resume 重跑同一命令继续。",
        "nothing_to_resume": "没有可继续的未完成文件 {path}",
        "resume_mismatch": "{path} 与输入文件对不上（第 {line} 行），不能继续：请去掉 --resume 重新评估",
        "resumed": "从第 {line} 行继续（已判定 {done} 行）",
        "no_chromium": "生成 PDF 需要 chromium（apt-get install chromium）；或改用 .html 输出",
        "pdf_failed": "chromium 未能生成 PDF：{detail}",
        "written": "已写入 {path}",
        "as_of_today": "未给 --as-of，按今天 {date} 评估未写评估日期的行",
        "programs_title": "项目（政策版本 {version}，{date}）",
        "standards_title": "{region} 在 {date} 执行的标准（政策版本 {version}）",
        "parameter": "参数",
        "value": "数值",
        "unit": "单位",
        "effective_from": "起始日期",
        "source": "来源",
        "rules": "规则数",
        "field": "字段",
        # Output columns of a batch (the office's own columns come first, unchanged).
        "col_line": "行号",
        "col_status": "状态",
        "col_error": "错误",
        "col_date": "评估日期",
        "col_version": "政策版本",
        "col_outcome": "{program}结论",
        "col_amount": "{program}每月金额（元）",
        "col_reason": "{program}理由",
        "col_missing": "{program}缺少信息",
        "col_total": "每月合计（元）",
        "status_ok": "已判定",
        "status_error": "出错",
    },
    "en": {
        "program": "Program",
        "decision": "Decision",
        "monthly": "Monthly (yuan)",
        "amount": "Monthly (yuan)",
        "total": "Total",
        "eligible": "eligible",
        "ineligible": "not eligible",
        "undetermined": "undetermined",
        "not_paid": "eligible, not paid",
        "not_paid_because": "the higher {program} ({amount} yuan) is paid instead",
        "condition_passed": "met",
        "condition_failed": "not met",
        "exclusion_passed": "excludes",
        "exclusion_failed": "does not exclude",
        "other_passed": "applies",
        "other_failed": "does not apply",
        "unknown": "fact missing",
        "missing": "missing",
        "missing_title": "Missing facts (supply them to decide)",
        "colon": ": ",
        "missing_supply": "missing {label}: {how}",
        "supply_flag_column": "give {flag} or the column '{column}'",
        "assumed": "assumed {label} is '{value}': please confirm",
        "interaction": "interaction",
        "reason": "Reason",
        "citation": "Source",
        "referrals": "Referrals",
        "if_confirmed": " (to confirm: {conditions})",
        "caveats": "Caveats",
        "region": "Region",
        "date": "Evaluated on",
        "version": "Policy version",
        "request_hash": "Request hash",
        "compared": "amounts",
        "kept": "kept",
        "detail_hint": "Every rule with its source: add --detail",
        "heading": "{program}: {outcome}, {amount} yuan a month",
        "rows": "{rows} rows: {ok} decided, {errors} with errors",
        "progress": "Evaluating",
        "line": "line {line}: {error}",
        "choices": "expected one of: {choices}",
        "bool": "expected yes or no",
        "int": "expected a whole number",
        "money": "expected an amount in yuan with at most two decimals",
        "date_value": "expected a date such as 2020-08-01 or 2020/8/1",
        "id_as_number": "the ID number was stored by Excel as a number ({shown}) and lost its last digits: "
        "format the column as Text in Excel and enter it again",
        "unknown_fields": "unknown fields: {fields} (see --help for the names)",
        "short_row": "this row has {got} values but there are {want} column names: fill it up "
        "(leave the commas for empty values)",
        "extra_values": "this row has {got} values, more than the {want} column names",
        "no_header": "the first line must name the columns (id_number,birth_date,region_code,...), not hold data",
        "missing_columns": "required columns missing: {columns}{hint}",
        "did_you_mean": " (misspelt: {names}?)",
        "duplicate_column": "column {first} '{a}' and column {second} '{b}' are the same field: remove one",
        "not_mapping": "{path} must be YAML/JSON of 'field: value'",
        "unreadable": "cannot read {path}: {detail}",
        "encoding": "{path} is not UTF-8 or GB18030 text; name its encoding with --encoding",
        "syntax": "{path}: bad syntax at line {line}",
        "cert_pair": "--client-cert and --client-key go together",
        "key_mismatch": "--client-key does not belong to --client-cert: give the key the certificate was issued for",
        "unreachable": "cannot reach the eligibility service at {address}, "
        "or it did not answer in time ({code}). "
        "Check --address / SUBSIDY_ADDRESS and that the service is running.",
        "tls_to_plaintext": "the service at {address} does not use TLS but --tls was given: "
        "drop --tls, or have the service run with TLS.",
        "plaintext_to_tls": "the service at {address} requires TLS: add --tls and --ca-cert "
        "(the CA that issued the service's certificate).",
        "unknown_ca": "cannot verify the certificate of the service at {address}: "
        "give the CA that issued it with --ca-cert.",
        "cert_required": "the service at {address} requires a client certificate, or does not trust the one given: "
        "give --client-cert and --client-key issued by a CA the service trusts.",
        "not_allowed": "the service refused this client certificate's identity (not on its allow-list): "
        "have its CN or SAN added to the service's --allowed-callers.",
        "refused": "the service refused the input: {detail}",
        "server": "the eligibility service failed ({code}): {detail}",
        "order": "the service's answers do not match the requests: expected item {want}, got {got}",
        "same_file": "the output is the input file ({path}): give another output file name",
        "exists": "the output {path} exists: add --force to replace it, or give another name",
        "no_directory": "the output directory {path} does not exist",
        "output_type": "cannot write {suffix} files: {choices}",
        "interrupted": "the service stopped: {done} rows decided, written to {path} (incomplete). "
        "When it is back, run the same command with --resume.",
        "nothing_to_resume": "no incomplete file {path} to resume",
        "resume_mismatch": "{path} does not match the input (line {line}); cannot resume: run again without --resume",
        "resumed": "resuming at line {line} ({done} rows already decided)",
        "no_chromium": "a PDF needs chromium (apt-get install chromium); or write .html",
        "pdf_failed": "chromium could not print the PDF: {detail}",
        "written": "written to {path}",
        "as_of_today": "no --as-of: rows without an evaluation date are decided as of today, {date}",
        "programs_title": "Programs (policy version {version}, {date})",
        "standards_title": "Standards in force in {region} on {date} (policy version {version})",
        "parameter": "Parameter",
        "value": "Value",
        "unit": "Unit",
        "effective_from": "From",
        "source": "Source",
        "rules": "Rules",
        "field": "field",
        "col_line": "line",
        "col_status": "status",
        "col_error": "error",
        "col_date": "evaluation_date",
        "col_version": "policy_version",
        "col_outcome": "{program}_outcome",
        "col_amount": "{program}_monthly_yuan",
        "col_reason": "{program}_reason",
        "col_missing": "{program}_missing",
        "col_total": "total_monthly_yuan",
        "status_ok": "ok",
        "status_error": "error",
    },
}


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

    def __init__(self, errors: dict[str, ClientError], labels: dict[str, dict[str, str]] | None = None) -> None:
        super().__init__(ExitCode.BAD_INPUT, "fields")
        self.errors = errors
        self.labels = labels or {}

    def text(self, lang: str) -> str:
        return "; ".join(
            f"{self.labels.get(name, {}).get(lang, name)}: {error.text(lang)}" for name, error in self.errors.items()
        )
