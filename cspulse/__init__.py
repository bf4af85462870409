"""cspulse: customer-service agent performance, from the shop's events."""

__version__ = "0.1.0"
