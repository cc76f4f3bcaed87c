"""The operators' alert topic (SNS, ``ALERT_TOPIC_ARN``): the one way code pages someone.

botocore is imported on the first alert only (alerts are rare; cold start stays lean).
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
