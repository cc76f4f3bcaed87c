"""The operators' alert topic (SNS, ``ALERT_TOPIC_ARN``): the one way code pages someone.

``SnsAlerts`` is the ``chalicelib.services.alerts.Alerts`` port; ``publish`` is the same call for
callers that hold a topic and a region. botocore is imported on the first alert only (alerts are
rare; cold start stays lean).
"""

from __future__ import annotations


def publish(topic_arn: str | None, region: str, subject: str, message: str) -> bool:
    """Publish to the topic; False (nothing sent) when no topic is configured."""
    if not topic_arn:
        return False
    import botocore.session

    client = botocore.session.get_session().create_client("sns", region_name=region)
    client.publish(TopicArn=topic_arn, Subject=subject[:100], Message=message)
    return True


class SnsAlerts:
    """The alert topic of a stage; without a topic (the local stack, the tests) nothing is sent
    and ``publish`` answers False, so the caller can say so in its log."""

    def __init__(self, topic_arn: str | None, region: str) -> None:
        self.topic_arn = topic_arn
        self.region = region

    def publish(self, subject: str, message: str) -> bool:
        return publish(self.topic_arn, self.region, subject, message)
