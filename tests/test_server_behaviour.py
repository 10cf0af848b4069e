"""The server as an operator sees it: health, reflection, deadlines and
cancellation, admission control, SIGTERM drain, the ``tickwire serve`` command
and its JSON logs.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import ServerHandle, start_server, stop_server
from google.protobuf import descriptor_pool
from google.rpc import error_details_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_status import rpc_status
from tickwire import cli
from tickwire.config import Settings
from tickwire.risk.v1 import risk_pb2, risk_pb2_grpc
from tickwire_client import AsyncClient, Client, TickwireError, to_tensor

RISK_SERVICE = "tickwire.risk.v1.RiskService"
HEALTH_SERVICE = "grpc.health.v1.Health"
REPO = Path(__file__).resolve().parents[1]


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; its last value."""
    end = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mc_request(returns: np.ndarray, positions: np.ndarray, sims: int) -> risk_pb2.ComputeVarRequest:
    return risk_pb2.ComputeVarRequest(
        scenarios=to_tensor(returns),
        positions=positions.tolist(),
        method=risk_pb2.VAR_METHOD_MONTE_CARLO,
        confidence_levels=[0.99],
        monte_carlo=risk_pb2.MonteCarloOptions(num_simulations=sims, seed=3),
    )


# --------------------------------------------------------------------------
# health and reflection
# --------------------------------------------------------------------------
def test_health(client: Client) -> None:
    assert client.health("") == "SERVING"
    assert client.health(RISK_SERVICE) == "SERVING"
    with pytest.raises(TickwireError) as exc:
        client.health("tickwire.nope.v1.NopeService")
    assert exc.value.code == grpc.StatusCode.NOT_FOUND


def test_health_async(server: ServerHandle) -> None:
    async def go() -> list[str]:
        async with AsyncClient(server.target, timeout=10.0) as c:
            await c.wait_ready(10.0)
            return [await c.health(""), await c.health(RISK_SERVICE)]

    assert asyncio.run(go()) == ["SERVING", "SERVING"]


def test_reflection(server: ServerHandle) -> None:
    with grpc.insecure_channel(server.target) as channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        services = set(db.get_services())
        assert {RISK_SERVICE, HEALTH_SERVICE} <= services
        pool = descriptor_pool.DescriptorPool(db)
        service = pool.FindServiceByName(RISK_SERVICE)
        method = service.methods_by_name["ComputeVar"]
        assert method.full_name == f"{RISK_SERVICE}.ComputeVar"
        assert pool.FindMethodByName(method.full_name) is method
        assert method.input_type.full_name == "tickwire.risk.v1.ComputeVarRequest"
        assert method.output_type.full_name == "tickwire.risk.v1.ComputeVarResponse"
        # Imported files resolve too: a tool can build the request from reflection alone.
        scenarios = method.input_type.fields_by_name["scenarios"]
        assert scenarios.message_type.full_name == "tickwire.common.v1.Tensor"
        assert [m.name for m in service.methods] == [
            "RegisterScenarios",
            "ComputeVar",
            "ComputeComponentVar",
            "BacktestVar",
        ]


# --------------------------------------------------------------------------
# deadlines, cancellation, admission control
# --------------------------------------------------------------------------
def test_short_deadline_abandons_compute(server: ServerHandle, client: Client, returns, positions):
    """1e8 Monte Carlo draws take many seconds here; a 0.3 s deadline ends the call
    at once, and the server stops the work at its next chunk instead of finishing it."""
    rt = server.app.runtime
    assert wait_until(lambda: rt.inflight == 0, 10.0)
    with pytest.raises(TickwireError) as exc:
        client.risk.compute_var(
            returns, positions, method="monte_carlo", num_simulations=100_000_000, timeout=0.3
        )
    assert exc.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    # inflight counts the executor work itself, so 0 means the compute ended: well
    # before the many seconds that finishing 1e8 draws would take.
    assert wait_until(lambda: rt.inflight == 0, 5.0), rt.inflight
    # The server is not left busy: a normal call answers promptly.
    r = client.risk.compute_var(returns, positions, method="monte_carlo", num_simulations=20_000)
    assert r.num_scenarios == 20_000


def test_client_cancel_abandons_compute(server: ServerHandle, returns, positions) -> None:
    rt = server.app.runtime
    assert wait_until(lambda: rt.inflight == 0, 10.0)
    with grpc.insecure_channel(server.target) as ch:
        stub = risk_pb2_grpc.RiskServiceStub(ch)
        fut = stub.ComputeVar.future(mc_request(returns, positions, 100_000_000), timeout=60)
        assert wait_until(lambda: rt.inflight == 1, 10.0)
        t0 = time.monotonic()
        assert fut.cancel()
        assert wait_until(lambda: rt.inflight == 0, 5.0), rt.inflight
        assert time.monotonic() - t0 < 5.0
        assert fut.cancelled()


@pytest.fixture
def one_slot_server() -> Iterator[ServerHandle]:
    """A server that admits one executor call at a time, and sends every call there."""
    handle = start_server(
        Settings(host="127.0.0.1", port=0, max_concurrent_calls=1, inline_threshold_us=0)
    )
    yield handle
    stop_server(handle)


def test_admission_control_sheds_load(one_slot_server: ServerHandle, returns, positions):
    target = one_slot_server.target

    async def two_at_once() -> list[object]:
        async with AsyncClient(target, timeout=60.0) as c:
            await c.wait_ready(10.0)

            async def slow() -> object:
                return await c.risk.compute_var(
                    returns, positions, method="monte_carlo", num_simulations=4_000_000
                )

            return await asyncio.gather(slow(), slow(), return_exceptions=True)

    results = asyncio.run(two_at_once())
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1, results
    err = errors[0]
    assert isinstance(err, TickwireError)
    assert err.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.reason == "OVERLOADED"
    assert "limit 1" in err.message
    ok = [r for r in results if not isinstance(r, Exception)]
    assert ok[0].num_scenarios == 4_000_000

    # The rejection says when to retry (google.rpc.RetryInfo), for any client.
    rt = one_slot_server.app.runtime
    with grpc.insecure_channel(target) as ch:
        stub = risk_pb2_grpc.RiskServiceStub(ch)
        fut = stub.ComputeVar.future(mc_request(returns, positions, 4_000_000), timeout=60)
        assert wait_until(lambda: rt.inflight == 1, 10.0)
        with pytest.raises(grpc.RpcError) as exc:
            stub.ComputeVar(mc_request(returns, positions, 1000), timeout=30)
        assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        status = rpc_status.from_call(exc.value)
        retry = error_details_pb2.RetryInfo()
        assert any(d.Unpack(retry) for d in status.details if d.Is(retry.DESCRIPTOR))
        assert retry.retry_delay.ToNanoseconds() > 0
        assert fut.result(timeout=60).num_scenarios == 4_000_000
    # The slot is free again once the work is done.
    assert wait_until(lambda: rt.inflight == 0, 5.0)
    with Client(target) as c:
        assert c.risk.compute_var(returns, positions).num_scenarios == returns.shape[0]


# --------------------------------------------------------------------------
# the `tickwire serve` process
# --------------------------------------------------------------------------
def _serve_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TICKWIRE_", "OTEL_"))}
    env.update(extra)
    return env


class ServeProcess:
    """``python -m tickwire serve`` with its stdout read line by line in a thread."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tickwire", "serve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.stderr = ""

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def listening_port(self, timeout: float = 60.0) -> int:
        """The port from the start-up line ``tickwire listening on HOST:PORT``."""
        line = self.lines.get(timeout=timeout)
        prefix = "tickwire listening on 127.0.0.1:"
        assert line.startswith(prefix), line
        return int(line[len(prefix) :])

    def terminate_and_wait(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        _, self.stderr = self.proc.communicate(timeout=timeout)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=30)

    def json_logs(self) -> list[dict]:
        """Every stderr line, each of which must be one JSON object."""
        records = []
        for line in self.stderr.splitlines():
            if line.strip():
                records.append(json.loads(line))
        for r in records:
            assert {"ts", "level", "logger", "msg"} <= set(r), r
        return records


def test_sigterm_drains_in_flight_call(returns, positions) -> None:
    """SIGTERM while a ~1 s call runs: the call completes OK, the process exits 0,
    and it logs JSON lines. The --port flag wins over TICKWIRE_PORT."""
    env_port, flag_port = free_port(), free_port()
    env = _serve_env(TICKWIRE_LOG_FORMAT="json", TICKWIRE_PORT=str(env_port))
    serve = ServeProcess(["--host", "127.0.0.1", "--port", str(flag_port)], env)
    try:
        assert serve.listening_port() == flag_port
        with Client(f"127.0.0.1:{flag_port}", timeout=60.0) as c:
            c.wait_ready(30.0)
            assert wait_until(lambda: c.health() == "SERVING", 30.0, 0.1)
            outcome: dict[str, object] = {}

            def slow_call() -> None:
                try:
                    outcome["report"] = c.risk.compute_var(
                        returns, positions, method="monte_carlo", num_simulations=5_000_000
                    )
                except Exception as exc:
                    outcome["error"] = exc

            caller = threading.Thread(target=slow_call)
            t0 = time.monotonic()
            caller.start()
            time.sleep(0.5)  # the request is on the server by now
            assert caller.is_alive(), outcome
            rc = serve.terminate_and_wait(timeout=30.0)
            caller.join(timeout=30.0)
        assert not caller.is_alive()
        assert "error" not in outcome, outcome
        assert outcome["report"].num_scenarios == 5_000_000
        assert rc == 0, serve.stderr
        assert time.monotonic() - t0 < 30.0
    finally:
        serve.kill()
    logs = serve.json_logs()
    msgs = [r["msg"] for r in logs]
    assert msgs[0] == "tickwire serving"
    assert logs[0]["address"] == f"127.0.0.1:{flag_port}"
    draining = next(r for r in logs if r["msg"] == "draining")
    assert draining["inflight"] == 1  # the call was in flight when SIGTERM came
    assert msgs[-1] == "stopped"
    assert all(r["level"] == "INFO" for r in logs)


def test_serve_reads_port_from_environment() -> None:
    port = free_port()
    serve = ServeProcess([], _serve_env(TICKWIRE_PORT=str(port), TICKWIRE_HOST="127.0.0.1"))
    try:
        assert serve.listening_port() == port
        with Client(f"127.0.0.1:{port}", timeout=30.0) as c:
            c.wait_ready(30.0)
            assert wait_until(lambda: c.health() == "SERVING", 30.0, 0.1)
        assert serve.terminate_and_wait() == 0
    finally:
        serve.kill()
    assert [r["msg"] for r in serve.json_logs()][-1] == "stopped"  # JSON is the default


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKWIRE_PORT", "43210")
    monkeypatch.setenv("TICKWIRE_MAX_CONCURRENT_CALLS", "7")
    settings = cli._settings(cli._parser().parse_args(["serve"]))
    assert (settings.port, settings.max_concurrent_calls) == (43210, 7)
    settings = cli._settings(cli._parser().parse_args(["serve", "--port", "43211"]))
    assert (settings.port, settings.max_concurrent_calls) == (43211, 7)


def test_bad_environment_value_exits_2(monkeypatch, capsys) -> None:
    monkeypatch.setenv("TICKWIRE_PORT", "fifty")
    assert cli.main(["serve"]) == 2
    assert "TICKWIRE_PORT='fifty'" in capsys.readouterr().err
