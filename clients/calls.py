"""Talking to the service: the channel (TLS from files), failures told in words a caseworker can act
on, and the batch stream pipelined so that the client is not what limits a large file.

The service's own error texts are English; its field errors (google.rpc.BadRequest, and the
field errors of a batch item) are shown here with the field's Chinese name and a Chinese reading
of the known descriptions.
"""

from __future__ import annotations

import queue
import re
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from clients.channel import TlsFiles, open_channel
from clients.facts import key_label
from clients.sheets import Row
from clients.texts import TEXT, ClientError, ExitCode, bad_input
from service.api import eligibility_pb2 as pb
from service.api import eligibility_pb2_grpc as pb_grpc

# --- The channel -------------------------------------------------------------------------------------


def _read(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as error:
        raise bad_input("unreadable", path=path, detail=error.strerror) from None


def _check_key_pair(cert: bytes, key: bytes) -> None:
    """A key that does not belong to the certificate fails in the gRPC core with no hint; say so first."""
    with tempfile.TemporaryDirectory() as scratch:
        cert_path, key_path = Path(scratch) / "cert.pem", Path(scratch) / "key.pem"
        cert_path.write_bytes(cert)
        key_path.write_bytes(key)
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert_path, key_path)
        except ssl.SSLError:
            raise bad_input("key_mismatch") from None


def connect(
    address: str,
    tls: bool,
    ca_cert: Path | None,
    client_cert: Path | None,
    client_key: Path | None,
    own_connection: bool = False,
) -> grpc.Channel:
    if not tls:
        return open_channel(address, own_connection=own_connection)
    if (client_cert is None) != (client_key is None):
        raise bad_input("cert_pair")
    files = TlsFiles(_read(ca_cert), _read(client_cert), _read(client_key))
    if files.client_cert is not None and files.client_key is not None:
        _check_key_pair(files.client_cert, files.client_key)
    return open_channel(address, files, own_connection=own_connection)


def stub(channel: grpc.Channel) -> pb_grpc.EligibilityServiceStub:
    return pb_grpc.EligibilityServiceStub(channel)


# --- Failures ----------------------------------------------------------------------------------------

_UNREACHABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
# Codes the service uses for requests it cannot decide as asked: bad fields, unknown ids or regions,
# dates outside every policy period.
_REFUSED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.FAILED_PRECONDITION,
}

# The service's English field descriptions, read in Chinese. Unknown ones are shown as they are.
_DESCRIPTIONS_ZH: tuple[tuple[str, str], ...] = (
    (r"is required with an assessment", "有能力评估时必须填写"),
    (r"is required", "必须填写"),
    (r"must be a date YYYY-MM-DD", "应为日期（YYYY-MM-DD）"),
    (r"is not a real date", "不是真实存在的日期"),
    (r"must be a six-digit GB/T 2260 region code.*", "应为六位行政区划代码（GB/T 2260）"),
    (r"unknown region code.*", "没有这个区划代码"),
    (r"unknown program.*", "没有这个项目"),
    (r"program .* is listed twice", "项目重复"),
    (r"does not agree with the birth date in the ID number", "与身份证号中的出生日期不一致"),
    (r"is in the future", "晚于今天"),
    (r"is after the evaluation date", "晚于评估日期"),
    (r"must not be negative", "不能为负数"),
    (r"must be 1 to (\d+), or 0 for no certificate", r"应为 1 至 \1 级（无残疾证则不填）"),
    (r"a disability category needs a grade.*", "填了残疾类别，须同时填残疾等级（1 至 4）"),
    (r"the old 15-digit ID number is not accepted.*", "不接受 15 位旧身份证号，请填 18 位号码"),
    (r"must be 18 characters.*", "应为 18 位：17 位数字加 1 位校验码（数字或 X）"),
    (r"check character does not match.*", "校验码不符（GB 11643-1999），请核对号码"),
    (r"the embedded birth date is not a real date", "号码中的出生日期不存在"),
    (r"(\S+) is outside the policy period (\S+) to (\S+)", r"\1 不在政策有效期内（\2 至 \3）"),
    (r"unknown (value|benefit).*", "不是可识别的值"),
    (r"is not a valid .* message", "不是有效的请求"),
)


def field_key(path: str) -> str:
    """person.disability.grade -> disability_grade; person.household_income_per_head_fen -> ..._yuan."""
    name = re.sub(r"\[\d+\]$", "", path.removeprefix("person."))
    name = name.replace("capacity_assessment.", "capacity_").replace(".", "_")
    return name.removesuffix("_fen") + "_yuan" if name.endswith("_fen") else name


def field_error_text(path: str, description: str, lang: str) -> str:
    if lang == "en":
        return f"{field_key(path)}: {description}"
    for pattern, chinese in _DESCRIPTIONS_ZH:
        match = re.fullmatch(pattern, description.strip())
        if match:
            description = match.expand(chinese)
            break
    return f"{key_label(field_key(path), 'zh')}：{description}"


def _field_violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
    except ValueError:  # status details inconsistent with the call: fall back to the plain message
        return []
    violations = []
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations += [(v.field, v.description) for v in bad_request.field_violations]
    return violations


class Refused(ClientError):
    """Input the service refused, with its field errors read in the user's language."""

    def __init__(self, violations: list[tuple[str, str]], code: str, message: str) -> None:
        super().__init__(ExitCode.BAD_INPUT, "refused")
        self.violations, self.code, self.message = violations, code, message

    def text(self, lang: str) -> str:
        detail = ("；" if lang == "zh" else "; ").join(field_error_text(f, d, lang) for f, d in self.violations)
        return TEXT[lang]["refused"].format(detail=detail or code_text(self.code, self.message, lang))


# What a status without field errors means, for a caseworker; the service's own message follows it.
_CODES_ZH = {
    "INVALID_ARGUMENT": "输入有误",
    "NOT_FOUND": "找不到",
    "OUT_OF_RANGE": "评估日期不在政策期间内",
    "FAILED_PRECONDITION": "该地区该日期没有生效的标准",
    "RESOURCE_EXHAUSTED": "评估服务繁忙或请求过大",
    "INTERNAL": "评估服务内部错误",
}


def code_text(code: str, message: str, lang: str) -> str:
    if lang == "zh" and code in _CODES_ZH:
        return f"{_CODES_ZH[code]}（{message}）" if message else _CODES_ZH[code]
    return f"{code}: {message}"


def batch_error_text(error: pb.BatchError, lang: str) -> str:
    """A batch item's error, its fields read as for a single call."""
    if error.field_errors:
        joiner = "；" if lang == "zh" else "; "
        return joiner.join(field_error_text(e.field, e.description, lang) for e in error.field_errors)
    return code_text(error.code, error.message, lang)


def _speaks_tls(address: str) -> bool:
    """Whether something at `address` completes a TLS handshake (certificates not checked)."""
    host, _, port = address.removeprefix("dns:///").rpartition(":")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host.strip("[]"), int(port)), timeout=3) as raw,
            context.wrap_socket(raw, server_hostname=host.strip("[]")),
        ):
            return True
    except (OSError, ValueError):
        return False


def rpc_failure(error: grpc.RpcError, address: str, tls: bool) -> ClientError:
    code = error.code()
    details = error.details() or ""
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return ClientError(ExitCode.UNREACHABLE, "not_allowed")
    if code == grpc.StatusCode.UNAVAILABLE:
        if "WRONG_VERSION_NUMBER" in details:
            return ClientError(ExitCode.UNREACHABLE, "tls_to_plaintext", address=address)
        if "CERTIFICATE_VERIFY_FAILED" in details:
            return ClientError(ExitCode.UNREACHABLE, "unknown_ca", address=address)
        if "Socket closed" in details or "handshake" in details.lower():
            if tls:  # the server hung up during our handshake: it did not accept our certificate (or none)
                return ClientError(ExitCode.UNREACHABLE, "cert_required", address=address)
            if _speaks_tls(address):
                return ClientError(ExitCode.UNREACHABLE, "plaintext_to_tls", address=address)
    if code in _UNREACHABLE:
        return ClientError(ExitCode.UNREACHABLE, "unreachable", address=address, code=code.name)
    if code in _REFUSED:
        return Refused(_field_violations(error), code.name, details)
    return ClientError(ExitCode.SERVER_ERROR, "server", code=code.name, detail=details)


@contextmanager
def failures_as_client_errors(address: str, tls: bool) -> Iterator[None]:
    try:
        yield
    except grpc.RpcError as error:
        raise rpc_failure(error, address, tls) from None


# --- The batch stream, pipelined ----------------------------------------------------------------------

# Several streams at once, each on a connection of its own: one stream is decided one request after
# another, so its speed is one round trip per person; the service's event loop interleaves streams,
# and separate connections reach separate worker processes. Answers are read back in
# row order (row i went to stream i % STREAMS, and each stream answers in order), so the output
# needs no sorting and only the flow-control windows buffer.
STREAMS = 4
_QUEUE = 256
_END = object()


class Interrupted(Exception):
    """The service went away mid-batch: what was decided before is good, the rest is to resume."""

    def __init__(self, cause: grpc.RpcError) -> None:
        super().__init__(str(cause))
        self.cause = cause


def decide_rows(
    services: list[pb_grpc.EligibilityServiceStub], rows: Iterable[Row]
) -> Iterator[tuple[Row, pb.EvaluateBatchResponse | None]]:
    """(row, answer) for every row in order; rows the client could not parse are not sent (answer None).
    One stream per stub: stubs on channels of their own connections reach several service workers.

    Rows are read and parsed on a feeder thread while answers come back on this one. An RPC failure
    mid-stream raises Interrupted after the last row that was answered."""
    streams = len(services)
    stop = threading.Event()
    order: queue.Queue = queue.Queue(maxsize=_QUEUE * streams)
    lanes: list[queue.Queue] = [queue.Queue(maxsize=_QUEUE) for _ in range(streams)]

    def put(target: queue.Queue, item: object) -> bool:
        while not stop.is_set():
            try:
                target.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def feed() -> None:
        sent = 0
        try:
            for row in rows:
                if row.request is None:
                    if not put(order, (row, None)):
                        return
                    continue
                lane = sent % streams
                sent += 1
                if not put(lanes[lane], pb.EvaluateBatchRequest(ref=row.ref, request=row.request)):
                    return
                if not put(order, (row, lane)):
                    return
        except BaseException as error:  # noqa: BLE001 - a file error is re-raised on the reading thread
            put(order, error)
        finally:
            for lane_queue in lanes:
                put(lane_queue, _END)
            put(order, _END)

    def requests(lane_queue: queue.Queue) -> Iterator[pb.EvaluateBatchRequest]:
        while (item := lane_queue.get()) is not _END:
            yield item

    calls = [service.EvaluateBatch(requests(lane_queue)) for service, lane_queue in zip(services, lanes, strict=True)]
    feeder = threading.Thread(target=feed, name="batch-feeder", daemon=True)
    feeder.start()
    expected = [0] * streams
    try:
        while (item := order.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            row, lane = item
            if lane is None:
                yield row, None
                continue
            try:
                answer = next(calls[lane], None)
            except grpc.RpcError as error:
                if error.code() in _UNREACHABLE | {grpc.StatusCode.CANCELLED}:
                    raise Interrupted(error) from None
                raise
            if answer is None or answer.index != expected[lane]:
                got = getattr(answer, "index", "-")
                raise ClientError(ExitCode.SERVER_ERROR, "order", want=expected[lane], got=got)
            expected[lane] += 1
            yield row, answer
        for call in calls:  # to the end of each stream, so that a failure after the last answer still shows
            for _ in call:
                pass
    finally:
        stop.set()
        for call in calls:
            call.cancel()
        feeder.join(timeout=5)
