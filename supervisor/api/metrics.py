"""``GET /metrics``: the node and its instances in Prometheus' text format.

A collector reads the supervisor's live views at every scrape (nothing is kept in metric
objects between scrapes, so a deleted instance simply disappears): per instance, labelled with
``instance`` (its entry is in ``pipevisor_instance_info``), its state, restarts, the counters and
rates of its program's status, its processing time, clients, stall flag and the resources of its
process tree; per node, CPU, memory, load, network and instance counts. Counters are totals of
the current run (a restart resets them, which Prometheus' ``rate()`` handles as a counter
reset). The node's families go through prometheus_client; the per-instance ones, thousands of
samples, are written by :func:`render_instances`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from .. import __version__
from ..nodeapi import NodeAPI
from ..nodeapi.models import InstanceInfo, InstanceState

__all__ = ["NodeCollector", "metrics_registry", "render_instances", "router"]

router = APIRouter(tags=["node"])

# One label: series stay cheap to write and to store; the entry is in pipevisor_instance_info
# (join on it: ``... * on(instance) group_left(entry) pipevisor_instance_info``).
_LABELS = ["instance"]
# (metric name, help, attribute of InstanceStats) of the program's counters and gauges.
_COUNTERS = (
    ("messages_in", "Messages received on DATA in this run.", "messages_in"),
    ("messages_out", "Messages sent on OUTPUT in this run.", "messages_out"),
    ("bytes_in", "Bytes received on DATA in this run.", "bytes_in"),
    ("bytes_out", "Bytes sent on OUTPUT in this run.", "bytes_out"),
    ("input_drops", "Input messages dropped because processing fell behind.", "drops"),
    ("output_drops", "Output messages no peer could take.", "output_drops"),
    ("errors", "Messages whose processing failed.", "errors"),
    ("malformed", "Undecodable input messages.", "malformed"),
)
_GAUGES = (
    ("rate_in", "Input messages per second.", "rate_in"),
    ("rate_out", "Output messages per second.", "rate_out"),
    ("byte_rate_in", "Input bytes per second.", "byte_rate_in"),
    ("byte_rate_out", "Output bytes per second.", "byte_rate_out"),
    ("processing_seconds_avg", "Mean processing time per message, s.", "processing_time_avg"),
    (
        "processing_seconds_max",
        "Longest processing time of the last interval, s.",
        "processing_time_max",
    ),
)
_UP = (InstanceState.STARTING, InstanceState.RUNNING)
# prometheus_client leaves floatToGoString unannotated: its signature, a number in, Go's text out.
_go_float: Callable[[float], str] = floatToGoString
_RESOURCES = (
    ("cpu_percent", "CPU of the process tree, % of one core.", "cpu_percent"),
    ("memory_rss_bytes", "Resident memory of the process tree, bytes.", "rss_bytes"),
    ("threads", "Threads of the process tree.", "threads"),
    ("open_fds", "Open file descriptors of the process tree.", "fds"),
    ("processes", "Processes in the tree.", "processes"),
)


class NodeCollector(Collector):
    """Yields the node's metric families from the node's figures of the current scrape.

    The scrape sets ``node`` (awaited from the node API) right before it renders."""

    def __init__(self) -> None:
        self.node: dict[str, Any] | None = None

    def collect(self) -> Iterator[Any]:
        if self.node is not None:
            yield from self._node(self.node)

    @staticmethod
    def _node(node: dict[str, Any]) -> Iterator[Any]:
        info = GaugeMetricFamily(
            "pipevisor_build_info", "The pipevisor version of this node.", labels=["version"]
        )
        info.add_metric([__version__], 1)
        yield info
        yield GaugeMetricFamily(
            "pipevisor_uptime_seconds", "Seconds since the supervisor started.", node["uptime"]
        )
        states = GaugeMetricFamily(
            "pipevisor_node_instances", "Instances of this node by state.", labels=["state"]
        )
        for state, count in node["states"].items():
            states.add_metric([state], count)
        yield states
        resources = node.get("resources")
        if not resources:
            return
        for name, text, key in (
            ("cpu_percent", "CPU of the whole machine, %.", "cpu_percent"),
            ("cpu_count", "Logical CPUs.", "cpu_count"),
            ("memory_total_bytes", "Memory of the machine, bytes.", "memory_total"),
            ("memory_available_bytes", "Memory available, bytes.", "memory_available"),
            ("net_receive_bytes_per_second", "Received, all interfaces.", "net_rx_bytes_per_s"),
            ("net_transmit_bytes_per_second", "Sent, all interfaces.", "net_tx_bytes_per_s"),
        ):
            yield GaugeMetricFamily(f"pipevisor_node_{name}", text, resources[key])
        for name, text, key in (
            ("net_receive_bytes", "Received since boot, all interfaces.", "net_rx_bytes"),
            ("net_transmit_bytes", "Sent since boot, all interfaces.", "net_tx_bytes"),
        ):
            yield CounterMetricFamily(f"pipevisor_node_{name}", text, resources[key])
        load = GaugeMetricFamily("pipevisor_node_load", "Load average.", labels=["minutes"])
        for minutes, value in zip(("1", "5", "15"), resources["load"], strict=True):
            load.add_metric([minutes], value)
        yield load


def _escape(value: str) -> str:
    """A label value as the text format wants it."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _family(lines: list[str], name: str, kind: str, text: str) -> None:
    lines.append(f"# HELP {name} {text}\n# TYPE {name} {kind}\n")


def render_instances(instances: list[InstanceInfo]) -> str:
    """The per-instance series in the text format, written directly.

    prometheus_client's writer validates and escapes every label of every sample (about 5 us a
    sample): with 200 instances and 20 series each that was most of a 40 ms scrape. Here the
    names are constants and the one label value is escaped once per instance. The output is
    parsed back by prometheus_client's parser in the tests."""
    labels = [f'{{instance="{_escape(i.name)}"}}' for i in instances]
    lines: list[str] = []

    def series(name: str, kind: str, text: str, values: list[tuple[str, Any]]) -> None:
        # The text format names a counter's family after its sample: ..._total.
        full = f"pipevisor_instance_{name}" + ("_total" if kind == "counter" else "")
        _family(lines, full, kind, text)
        lines.extend(f"{full}{label} {_number(value)}\n" for label, value in values)

    pairs = list(zip(labels, instances, strict=True))
    _family(lines, "pipevisor_instance_info", "gauge", "The instance's entry.")
    lines.extend(
        f'pipevisor_instance_info{{instance="{_escape(i.name)}",entry="{_escape(i.entry)}"}} 1\n'
        for i in instances
    )
    series("up", "gauge", "1 while the instance's program runs (ready or not), else 0.",
           [(label, 1 if i.state in _UP else 0) for label, i in pairs])  # fmt: skip
    _family(lines, "pipevisor_instance_state", "gauge", "1 for the instance's state.")
    lines.extend(
        f'pipevisor_instance_state{{instance="{_escape(i.name)}",state="{i.state}"}} 1\n'
        for i in instances
    )
    series("stalled", "gauge", "1 when input flows but the output stands still.",
           [(label, 1 if i.stalled else 0) for label, i in pairs])  # fmt: skip
    series("unresponsive", "gauge", "1 when the program's status heartbeat is silent.",
           [(label, 1 if i.unresponsive else 0) for label, i in pairs])  # fmt: skip
    counted = [(label, i.stats.clients) for label, i in pairs if i.stats.clients is not None]
    series("clients", "gauge", "Peers connected to the output (when the program counts).", counted)
    series("restarts", "counter", "Restarts of the instance.",
           [(label, i.restarts) for label, i in pairs])  # fmt: skip
    for name, text, attribute in _COUNTERS:
        series(name, "counter", text, [(label, getattr(i.stats, attribute)) for label, i in pairs])
    for name, text, attribute in _GAUGES:
        series(name, "gauge", text, [(label, getattr(i.stats, attribute)) for label, i in pairs])
    _family(lines, "pipevisor_instance_counter", "gauge", "The program's own counters, by name.")
    lines.extend(
        f'pipevisor_instance_counter{{instance="{_escape(i.name)}",name="{name}"}} '
        f"{_number(value)}\n"
        for i in instances
        for name, value in i.stats.counters.items()  # names are snake_case: no escaping
    )
    sampled = [(label, i.resources) for label, i in pairs if i.resources.sampled_at is not None]
    for name, text, attribute in _RESOURCES:
        series(name, "gauge", text, [(label, getattr(r, attribute)) for label, r in sampled])
    return "".join(lines)


def _number(value: Any) -> str:
    return str(value) if type(value) is int else _go_float(value)


def metrics_registry(collector: NodeCollector) -> CollectorRegistry:
    """A registry of its own for one app (never prometheus_client's global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text."}},
)
async def metrics(request: Request) -> Response:
    """The node and its instances in Prometheus' text exposition format.

    Built on the event loop, where the supervisor's state lives (a few ms for 200 instances)."""
    api: NodeAPI = request.app.state.node
    collector: NodeCollector = request.app.state.metrics
    # No await between setting the figures and rendering them: a concurrent scrape cannot mix.
    figures = await api.node_info()
    instances = await api.list_instances()
    collector.node = figures
    node = generate_latest(request.app.state.metrics_registry)
    body = node + render_instances(instances).encode()
    return Response(body, media_type=CONTENT_TYPE_LATEST)
