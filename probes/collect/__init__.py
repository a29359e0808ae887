"""The collector: one `FleetSnapshot` per round (see `probes.collect.round`)."""

from probes.collect.procnet import listening_ports, past_listeners
from probes.collect.round import Collector

__all__ = ["Collector", "listening_ports", "past_listeners"]
