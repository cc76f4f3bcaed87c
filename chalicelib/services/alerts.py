"""The operators' alert channel as services see it: a subject and a message, paged to whoever
watches the stage. ``chalicelib.adapters.alerts.SnsAlerts`` publishes to the SNS topic
``ALERT_TOPIC_ARN``; the nightly reconciliation and the restore drill both speak to this port."""

from __future__ import annotations

from typing import Protocol


class Alerts(Protocol):
    def publish(self, subject: str, message: str) -> bool:
        """Page the operators; False when nothing was sent because no channel is configured."""
        ...
