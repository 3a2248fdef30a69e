"""The shipped client's channel: it retries read-only calls a draining server cancels."""

from concurrent import futures

import grpc
import pytest

from steadyrank.service import client
from steadyrank.service.stubs import ranking_pb2, ranking_pb2_grpc


class _Flaky(ranking_pb2_grpc.RankingServiceServicer):
    """Answers the first ``failures`` calls with ``code``, then an empty ranking."""

    def __init__(self, code: grpc.StatusCode, failures: int) -> None:
        self.code, self.failures, self.calls = code, failures, 0

    def Rank(self, request, context):  # noqa: N802 (the gRPC method name)
        self.calls += 1
        if self.calls <= self.failures:
            context.abort(self.code, "draining")
        return ranking_pb2.RankResponse()


@pytest.mark.parametrize(("code", "failures", "calls", "ok"), [
    (grpc.StatusCode.CANCELLED, 1, 2, True),
    (grpc.StatusCode.UNAVAILABLE, 4, 5, True),
    (grpc.StatusCode.UNAVAILABLE, 6, 5, False),  # 5 attempts in all (gRPC's cap)
    (grpc.StatusCode.INVALID_ARGUMENT, 1, 1, False),  # a caller's mistake is not retried
])
def test_channel_retries_cancelled_and_unavailable_reads(code, failures, calls, ok):
    servicer = _Flaky(code, failures)
    server = grpc.server(futures.ThreadPoolExecutor(2))
    ranking_pb2_grpc.add_RankingServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with client.channel(f"127.0.0.1:{port}") as chan:
            stub = ranking_pb2_grpc.RankingServiceStub(chan)
            if ok:
                stub.Rank(client.rank_request("ml", 1, 3), timeout=10)
            else:
                with pytest.raises(grpc.RpcError) as err:
                    stub.Rank(client.rank_request("ml", 1, 3), timeout=10)
                assert err.value.code() == code
        assert servicer.calls == calls
    finally:
        server.stop(0)
