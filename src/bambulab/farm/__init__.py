"""Many printers on one event loop: the fleet, its configuration and the JSON summaries."""

from bambulab.farm.config import ApiToken, CloudConfig, GatewayConfig, PrinterConfig, load_config
from bambulab.farm.fleet import Fleet, FleetEvent, FleetSubscription, Member

__all__ = [
    "ApiToken",
    "CloudConfig",
    "Fleet",
    "FleetEvent",
    "FleetSubscription",
    "GatewayConfig",
    "Member",
    "PrinterConfig",
    "load_config",
]
