"""`subsidy-caseworker`: the command line of the caseworker client.

    check      one person, from flags or a YAML/JSON file; a receipt with --output
    batch      every row of a CSV or .xlsx file, to a CSV or .xlsx file
    programs   the programs the service decides
    standards  the figures in force in a region on a date

The work is done in the modules beside this one: facts (values and names), sheets (reading files),
calls (the service), explain/render/receipt (showing decisions), outputs (batch files).
"""

from __future__ import annotations

import os

# gRPC's C core logs handshake failures to stderr; caseworkers get one line of ours instead.
# Set before grpc is imported (below): the core reads it once.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import datetime as dt  # noqa: E402
import sys  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import ExitStack, contextmanager  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated, Any  # noqa: E402
from zoneinfo import ZoneInfo  # noqa: E402

import grpc  # noqa: E402
import typer  # noqa: E402
from google.protobuf import json_format  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402

from clients import calls, outputs, receipt, render  # noqa: E402
from clients.facts import KEYS, blank, build_request, check_names, short_names, value_label  # noqa: E402
from clients.sheets import load_person_file, open_sheet  # noqa: E402
from clients.texts import EXIT_CODES_HELP, TEXT, ClientError, ExitCode, Lang, bad_input  # noqa: E402
from service.api import eligibility_pb2 as pb  # noqa: E402


def _version(value: bool) -> None:
    if value:
        try:
            version = metadata.version("zj-subsidy-eligibility")
        except metadata.PackageNotFoundError:
            version = "unknown"
        print(f"subsidy-caseworker {version}")
        raise typer.Exit()


app = typer.Typer(
    help="Check what a person qualifies for with the subsidy-eligibility service.\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    pass


_CONN, _PERSON, _REQUEST, _OUT = "Service connection", "Person", "Request", "Output"
AddressOpt = Annotated[
    str, typer.Option(envvar="SUBSIDY_ADDRESS", help="host:port of the service.", rich_help_panel=_CONN)
]
TlsOpt = Annotated[
    bool, typer.Option(envvar="SUBSIDY_TLS", help="Use TLS (when the service does).", rich_help_panel=_CONN)
]
CaOpt = Annotated[
    Path | None,
    typer.Option(envvar="SUBSIDY_CA_CERT", help="CA certificate (PEM) of the service.", rich_help_panel=_CONN),
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
LangOpt = Annotated[Lang, typer.Option(help="Language: zh (中文) or en.", rich_help_panel=_OUT)]
AsOfOpt = Annotated[
    str | None, typer.Option(help="Evaluation date, YYYY-MM-DD (default today).", rich_help_panel=_REQUEST)
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace an existing output file.", rich_help_panel=_OUT)]


def _flag(help: str, *names: str, panel: str = _PERSON, metavar: str = "TEXT") -> Any:
    """A fact as text (`Annotated[str | None, _flag(...)]`): values are read by clients.facts as in
    files (是/否, 低保, 2020/8/1), one place."""
    return typer.Option(*names, help=help, rich_help_panel=panel, metavar=metavar)


def _yes(help: str, flag: str, negative: str) -> Any:
    """A yes/no fact: the flag says yes; its negative (hidden from the help, named in it) says no.
    Two options rather than click's --a/--no-a pair, whose second column would not fit 80 columns."""
    return typer.Option(flag, help=f"{help} No: {negative}.", rich_help_panel=_PERSON)


def _no(negative: str) -> Any:
    return typer.Option(negative, hidden=True)


def _said(yes: bool, no: bool) -> bool | None:
    return True if yes else False if no else None


def _enum_flag(help: str, enum_type: Any, name: str | None = None) -> Any:
    choices = ", ".join(
        f"{short} ({value_label(enum_type.DESCRIPTOR, short, 'zh')})" for short in short_names(enum_type.DESCRIPTOR)
    )
    return _flag(f"{help}: {choices}.", *((name,) if name else ()), metavar="NAME")


@contextmanager
def reporting(lang: str, address: str, tls: bool) -> Iterator[None]:
    """Every expected failure as one line on stderr and its exit code: never a traceback."""
    try:
        yield
    except grpc.RpcError as error:
        failure = calls.rpc_failure(error, address, tls)
        print(failure.text(lang), file=sys.stderr)
        raise typer.Exit(failure.exit_code) from None
    except ClientError as failure:
        print(failure.text(lang), file=sys.stderr)
        raise typer.Exit(failure.exit_code) from None


def _today() -> str:
    return dt.datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()


def _check_receipt_target(target: Path, force: bool) -> None:
    """Refused before the service is asked: an existing file stays as it is without --force."""
    if target.suffix.lower() not in (".html", ".htm", ".pdf"):
        raise bad_input("output_type", suffix=target.suffix or "''", choices=".html, .pdf")
    if not target.parent.is_dir():
        raise bad_input("no_directory", path=target.parent)
    if target.exists() and not force:
        raise bad_input("exists", path=target)


def _write_receipt(reply: pb.EvaluateResponse, id_number: str, lang: str, target: Path) -> None:
    page = receipt.render_html(reply, id_number, lang)
    temp = outputs.new_temp(target)
    try:
        if target.suffix.lower() == ".pdf":
            receipt.print_pdf(page, temp)
        else:
            temp.write_text(page, encoding="utf-8")
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    print(TEXT[lang]["written"].format(path=target), file=sys.stderr)


@app.command(epilog=EXIT_CODES_HELP)
def check(
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            exists=True,
            dir_okay=False,
            help="YAML or JSON file of the person's facts, one 'name: value' a fact. The names are the "
            "flags' with _ (id_number, region_code, ...; household_income_per_head_yuan for "
            "--household-income, household_status for --household); flags given as well override it.",
            rich_help_panel=_PERSON,
        ),
    ] = None,
    id_number: Annotated[str | None, _flag("18-character resident ID number.")] = None,
    birth_date: Annotated[str | None, _flag("Birth date, 2020-08-01 or 2020/8/1.", metavar="DATE")] = None,
    region_code: Annotated[
        str | None, _flag("Household registration region (GB/T 2260), e.g. 330102.", "--region", metavar="CODE")
    ] = None,
    household_status: Annotated[
        str | None, _enum_flag("Household economic status", pb.HouseholdStatus, "--household")
    ] = None,
    household_income_per_head_yuan: Annotated[
        str | None, _flag("Monthly household income per head, yuan.", "--household-income", metavar="YUAN")
    ] = None,
    own_income_yuan: Annotated[
        str | None, _flag("The person's own monthly income, yuan.", "--own-income", metavar="YUAN")
    ] = None,
    disability_grade: Annotated[
        str | None, _flag("Disability certificate grade, 1 (most severe) to 4.", metavar="1-4")
    ] = None,
    disability_category: Annotated[str | None, _enum_flag("Disability category", pb.DisabilityCategory)] = None,
    long_term_care_need: Annotated[
        bool,
        _yes("Needs help in daily life for 6 months or more.", "--long-term-care-need", "--no-long-term-care-need"),
    ] = False,
    not_long_term_care_need: Annotated[bool, _no("--no-long-term-care-need")] = False,
    self_care: Annotated[str | None, _enum_flag("Self-care tier for the nursing subsidy", pb.SelfCare)] = None,
    in_institutional_care: Annotated[
        bool, _yes("Lives in approved institutional care.", "--in-institutional-care", "--not-in-institutional-care")
    ] = False,
    not_in_institutional_care: Annotated[bool, _no("--not-in-institutional-care")] = False,
    capacity_level: Annotated[str | None, _enum_flag("Elderly capacity assessment result", pb.CapacityLevel)] = None,
    capacity_assessed_on: Annotated[str | None, _flag("Date of that assessment.", metavar="DATE")] = None,
    child_status: Annotated[str | None, _enum_flag("A minor's care situation", pb.ChildStatus)] = None,
    in_full_time_education: Annotated[
        bool,
        _yes(
            "In full-time education up to undergraduate level.",
            "--in-full-time-education",
            "--not-in-full-time-education",
        ),
    ] = False,
    not_in_full_time_education: Annotated[bool, _no("--not-in-full-time-education")] = False,
    serious_illness: Annotated[
        bool, _yes("Has a serious illness.", "--serious-illness", "--no-serious-illness")
    ] = False,
    not_serious_illness: Annotated[bool, _no("--no-serious-illness")] = False,
    depends_on_family_support: Annotated[
        bool, _yes("Depends on family support.", "--depends-on-family-support", "--no-family-support")
    ] = False,
    not_depends_on_family_support: Annotated[bool, _no("--no-family-support")] = False,
    other_benefits: Annotated[
        list[str] | None, _enum_flag("Another benefit already received (repeatable)", pb.Benefit, "--other-benefit")
    ] = None,
    as_of: AsOfOpt = None,
    programs: Annotated[
        list[str] | None, _flag("Decide only this program id (repeatable).", "--program", panel=_REQUEST)
    ] = None,
    detail: Annotated[
        bool, typer.Option("--detail", help="Every rule of every program, with its source.", rich_help_panel=_OUT)
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", dir_okay=False, help="Write a printable receipt (.html or .pdf).", rich_help_panel=_OUT
        ),
    ] = None,
    force: ForceOpt = False,
    lang: LangOpt = Lang.zh,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the service's reply as JSON.", rich_help_panel=_OUT)
    ] = False,
    address: AddressOpt = "localhost:50051",
    tls: TlsOpt = False,
    ca_cert: CaOpt = None,
    client_cert: CertOpt = None,
    client_key: KeyOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Decide for one person: per program the outcome, the amount and why."""
    flags = {
        "id_number": id_number,
        "birth_date": birth_date,
        "region_code": region_code,
        "household_status": household_status,
        "household_income_per_head_yuan": household_income_per_head_yuan,
        "own_income_yuan": own_income_yuan,
        "disability_grade": disability_grade,
        "disability_category": disability_category,
        "long_term_care_need": _said(long_term_care_need, not_long_term_care_need),
        "self_care": self_care,
        "in_institutional_care": _said(in_institutional_care, not_in_institutional_care),
        "capacity_level": capacity_level,
        "capacity_assessed_on": capacity_assessed_on,
        "child_status": child_status,
        "in_full_time_education": _said(in_full_time_education, not_in_full_time_education),
        "serious_illness": _said(serious_illness, not_serious_illness),
        "depends_on_family_support": _said(depends_on_family_support, not_depends_on_family_support),
        "other_benefits": other_benefits,
        "as_of": as_of,
        "programs": programs,
    }
    with reporting(lang.value, address, tls):
        facts = load_person_file(file) if file else {}
        check_names(facts, KEYS)
        facts.update({key: value for key, value in flags.items() if not blank(value)})
        request = build_request(facts)
        if output is not None:
            _check_receipt_target(output, force)
        with calls.connect(address, tls, ca_cert, client_cert, client_key) as channel:
            reply = calls.stub(channel).Evaluate(request, timeout=timeout)
        if output is not None:
            _write_receipt(reply, request.person.id_number, lang.value, output)
    if json_output:
        print(json_format.MessageToJson(reply, ensure_ascii=False))
    elif output is None:
        render.render_decision(reply, lang.value, Console(), detail=detail)
    if any(d.outcome == pb.OUTCOME_UNDETERMINED for d in reply.decisions):
        raise typer.Exit(ExitCode.UNDETERMINED)


@app.command(epilog=EXIT_CODES_HELP)
def batch(
    input: Annotated[
        Path,
        typer.Option(
            "--input",
            "-i",
            exists=True,
            dir_okay=False,
            help="CSV (UTF-8 or GB18030) or .xlsx with a header row of Chinese or English column names "
            "(as in `check --file`, plus ref and as_of); other columns are copied to the output.",
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", dir_okay=False, help="CSV or .xlsx to write: one result row per input row, in order."
        ),
    ],
    as_of: AsOfOpt = None,
    encoding: Annotated[
        str | None, typer.Option(help="Encoding of a CSV input (default: UTF-8, else GB18030).")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue an interrupted batch from its .incomplete output."),
    ] = False,
    force: ForceOpt = False,
    lang: LangOpt = Lang.zh,
    address: AddressOpt = "localhost:50051",
    tls: TlsOpt = False,
    ca_cert: CaOpt = None,
    client_cert: CertOpt = None,
    client_key: KeyOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Decide for every row of a file: one output row per input row, bad rows reported by line number."""
    t = TEXT[lang.value]
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    with reporting(lang.value, address, tls):
        outputs.check_paths(input, output, force, resume)
        if as_of is None:
            as_of = _today()
            err.print(t["as_of_today"].format(date=as_of), markup=False)
        sheet = open_sheet(input, encoding, as_of)
        tls_files = (ca_cert, client_cert, client_key)
        with ExitStack() as channels:
            services = [
                calls.stub(channels.enter_context(calls.connect(address, tls, *tls_files, own_connection=True)))
                for _ in range(calls.STREAMS)
            ]
            # Asked first so that an unreachable service fails fast, before any output is written.
            programs = list(services[0].ListPrograms(pb.ListProgramsRequest(), timeout=timeout).programs)
            layout = outputs.Layout.of(sheet, programs, lang.value)
            rows = sheet.rows
            done: list[list[str]] = []
            if resume:
                done, rows = outputs.resumed_rows(output, layout, rows)
                err.print(t["resumed"].format(line=int(done[-1][0]) + 1 if done else 1, done=len(done)))
            out = outputs.Output(output, layout)
            try:
                for cells in done:
                    out.write(cells)
                with Progress(
                    TextColumn(t["progress"]), MofNCompleteColumn(), TimeElapsedColumn(), console=err
                ) as progress:
                    task = progress.add_task("", total=None)
                    for row, answer in calls.decide_rows(services, rows):
                        cells = layout.cells(row, answer)
                        out.write(cells)
                        if cells[1 + len(layout.kept)] != t["status_ok"]:  # one grep-able line per bad row
                            progress.console.print(
                                t["line"].format(line=row.line, error=cells[2 + len(layout.kept)]), markup=False
                            )
                        progress.advance(task)
            except (calls.Interrupted, KeyboardInterrupt):
                path = outputs.incomplete_path(output)
                out.finish(path)
                raise outputs.InterruptedBatch(out.tally.rows, path) from None
            except BaseException:
                out.discard()
                raise
            out.finish(output)
            outputs.incomplete_path(output).unlink(missing_ok=True)
    tally = out.tally
    Console().print(render.summary_table(programs, tally.people, tally.paid, tally.rows, tally.errors, lang.value))
    raise typer.Exit(outputs.exit_code(tally))


def _list_programs(address: str, tls: bool, files: tuple, timeout: float, **request: str) -> pb.ListProgramsResponse:
    with calls.connect(address, tls, *files) as channel:
        return calls.stub(channel).ListPrograms(pb.ListProgramsRequest(**request), timeout=timeout)


@app.command()
def programs(
    as_of: AsOfOpt = None,
    lang: LangOpt = Lang.zh,
    json_output: Annotated[bool, typer.Option("--json", help="Print the reply as JSON.", rich_help_panel=_OUT)] = False,
    address: AddressOpt = "localhost:50051",
    tls: TlsOpt = False,
    ca_cert: CaOpt = None,
    client_cert: CertOpt = None,
    client_key: KeyOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """The programs the service decides, with their rules and sources."""
    with reporting(lang.value, address, tls):
        reply = _list_programs(address, tls, (ca_cert, client_cert, client_key), timeout, as_of=as_of or "")
    if json_output:
        print(json_format.MessageToJson(reply, ensure_ascii=False))
    else:
        Console().print(render.programs_table(reply, lang.value))


@app.command()
def standards(
    region: Annotated[str, typer.Option("--region", help="Region code (GB/T 2260), e.g. 330106.")] = "330000",
    as_of: AsOfOpt = None,
    lang: LangOpt = Lang.zh,
    json_output: Annotated[bool, typer.Option("--json", help="Print the reply as JSON.", rich_help_panel=_OUT)] = False,
    address: AddressOpt = "localhost:50051",
    tls: TlsOpt = False,
    ca_cert: CaOpt = None,
    client_cert: CertOpt = None,
    client_key: KeyOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """The figures in force in a region on a date (dibao standard, shares, amounts)."""
    with reporting(lang.value, address, tls):
        reply = _list_programs(
            address, tls, (ca_cert, client_cert, client_key), timeout, as_of=as_of or "", region_code=region
        )
    if json_output:
        print(json_format.MessageToJson(reply, ensure_ascii=False))
    else:
        Console().print(render.standards_table(reply, region, lang.value))


def main() -> None:
    app(prog_name="subsidy-caseworker")


if __name__ == "__main__":
    main()
