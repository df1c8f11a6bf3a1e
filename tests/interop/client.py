"""A DVK Ledger client in Python, as another government system would write one.

Stubs are generated from the project's .proto files with grpcio-tools (into a
temporary directory), the JWT is minted with the standard library (HS256), and the
client registers a model, submits a report, and reads the commune's roll-up with the
position tokens of its writes (read-your-writes). It prints what it read as JSON.

Environment: DVK_REGISTRATION, DVK_REPORTING, DVK_AGGREGATION (host:port),
DVK_JWT_SECRET (the HS256 secret), DVK_UNIT (a commune of the pre-2025 tree),
DVK_PERIOD (an open half-year on that tree).
"""

import base64
import glob
import hashlib
import hmac
import json
import os
import sys
import tempfile
import time

import grpc
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))


def generate(out):
    """Generates the Python stubs of every DVK .proto file into `out`."""
    files = sorted(glob.glob(os.path.join(PROTO, "dvk", "**", "*.proto"), recursive=True))
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    args = ["grpc_tools.protoc", f"-I{PROTO}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}"]
    if protoc.main(args + files) != 0:
        sys.exit("protoc failed")
    # Make every generated directory a package.
    for root, _, _ in os.walk(os.path.join(out, "dvk")):
        open(os.path.join(root, "__init__.py"), "a").close()
    sys.path.insert(0, out)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def token(secret, role, unit=""):
    """An HS256 JWT with the claims DVK expects: sub, role, unit, exp."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"sub": f"python-{role}", "role": role, "unit": unit, "exp": int(time.time()) + 600}
    body = b64(json.dumps(claims).encode())
    signature = b64(hmac.new(secret, header + b"." + body, hashlib.sha256).digest())
    return (header + b"." + body + b"." + signature).decode()


def main():
    with tempfile.TemporaryDirectory(prefix="dvk-python-") as out:
        generate(out)
        run()


def run():
    from dvk.common.v1 import common_pb2 as common
    from dvk.events.v1 import events_pb2 as events
    from dvk.registration.v1 import registration_pb2, registration_pb2_grpc
    from dvk.reporting.v1 import reporting_pb2, reporting_pb2_grpc
    from dvk.aggregation.v1 import aggregation_pb2, aggregation_pb2_grpc

    secret = os.environ["DVK_JWT_SECRET"].encode()
    unit = os.environ["DVK_UNIT"]
    period = os.environ["DVK_PERIOD"]
    reporter = [("authorization", "Bearer " + token(secret, "reporter", unit))]
    analyst = [("authorization", "Bearer " + token(secret, "analyst"))]

    registration = registration_pb2_grpc.RegistrationServiceStub(grpc.insecure_channel(os.environ["DVK_REGISTRATION"]))
    reporting = reporting_pb2_grpc.ReportingServiceStub(grpc.insecure_channel(os.environ["DVK_REPORTING"]))
    aggregation = aggregation_pb2_grpc.AggregationServiceStub(grpc.insecure_channel(os.environ["DVK_AGGREGATION"]))

    model = registration.RegisterModel(
        registration_pb2.RegisterModelRequest(
            request_id="python-model-1",
            unit=common.UnitCode(code=unit),
            registered_on=common.Date(year=2024, month=3, day=8),
            details=events.ModelDetails(
                name="Mô hình \"Dân vận khéo\" từ một hệ thống khác",
                field=common.FIELD_CULTURE_SOCIETY,
                runner_kind=events.RUNNER_KIND_COLLECTIVE,
                runner_name="Chi đoàn thôn",
                sponsor=events.SPONSOR_YOUTH_UNION,
                sponsor_name="Đoàn Thanh niên xã",
                objectives="Thắp sáng đường quê",
                timeline=events.Timeline(start=common.Date(year=2024, month=3, day=8)),
            ),
        ),
        metadata=reporter,
        timeout=10,
    )
    # A retry with the same request id is answered as the first time.
    again = registration.RegisterModel(
        registration_pb2.RegisterModelRequest(
            request_id="python-model-1",
            unit=common.UnitCode(code=unit),
            registered_on=common.Date(year=2024, month=3, day=8),
            details=events.ModelDetails(
                name="Mô hình \"Dân vận khéo\" từ một hệ thống khác",
                field=common.FIELD_CULTURE_SOCIETY,
                runner_kind=events.RUNNER_KIND_COLLECTIVE,
                runner_name="Chi đoàn thôn",
                sponsor=events.SPONSOR_YOUTH_UNION,
                sponsor_name="Đoàn Thanh niên xã",
                objectives="Thắp sáng đường quê",
                timeline=events.Timeline(start=common.Date(year=2024, month=3, day=8)),
            ),
        ),
        metadata=reporter,
        timeout=10,
    )
    assert again.model_id == model.model_id, (again, model)

    report = reporting.SubmitReport(
        reporting_pb2.SubmitReportRequest(
            request_id="python-report-1",
            unit=common.UnitCode(code=unit),
            period=common.Period(code=period),
            figures=common.Figures(
                models_registered=3,
                models_recognized=1,
                funds_mobilized=common.Money(vnd=81_000_000_000),
                workdays=1200,
                participants=3400,
                dialogues_held=4,
                petitions_received=12,
                petitions_resolved=11,
                dan_van_days=1,
                commendations_collective=12,
                commendations_individual=11,
            ),
            summary="Tết Quân-Dân 2024: trên 81 tỷ đồng",
        ),
        metadata=reporter,
        timeout=10,
    )

    # A bad report is refused with the field named.
    try:
        reporting.SubmitReport(
            reporting_pb2.SubmitReportRequest(
                request_id="python-report-bad",
                unit=common.UnitCode(code=unit),
                period=common.Period(code=period),
                figures=common.Figures(petitions_received=1, petitions_resolved=2),
            ),
            metadata=reporter,
            timeout=10,
        )
        sys.exit("a report with more petitions resolved than received was accepted")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
        refused = e.details()

    rollup = aggregation.GetRollup(
        aggregation_pb2.GetRollupRequest(
            unit=common.UnitCode(code=unit),
            period=common.Period(code=period),
            tree=common.TREE_PRE2025,
            include_unapproved=True,
            min_positions=[model.position, report.position],
        ),
        metadata=analyst,
        timeout=30,
    )
    print(
        json.dumps(
            {
                "model_id": model.model_id,
                "report_id": report.report_id,
                "refused": refused,
                "unit_name": rollup.unit_name,
                "models_registered": rollup.models.registered,
                "reports_counted": rollup.reports_counted,
                "funds_mobilized_vnd": rollup.figures.funds_mobilized.vnd,
                "positions": {p.source: p.position for p in rollup.positions.positions},
            },
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    main()
