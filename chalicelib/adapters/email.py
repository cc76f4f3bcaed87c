"""Outgoing email: SES in deployed stages, and also a folder of ``.eml`` files in the local stage
so that a developer can read a password-reset link without a mail server."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol


class Mailer(Protocol):
    def send(self, to: str, subject: str, body: str) -> None: ...


@dataclass
class SesMailer:
    sender: str
    region: str
    endpoint: str | None = None

    def send(self, to: str, subject: str, body: str) -> None:
        import boto3  # imported on the only path that mails: keeps it out of every cold start

        client = boto3.client("ses", region_name=self.region, endpoint_url=self.endpoint)
        client.send_email(
            Source=self.sender,
            Destination={"ToAddresses": [to]},
            Message={"Subject": {"Data": subject}, "Body": {"Text": {"Data": body}}},
        )


@dataclass
class FolderMailer:
    """Writes each message to ``<folder>/<n>-<recipient>.eml``."""

    sender: str
    folder: Path

    def send(self, to: str, subject: str, body: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.sender, to, subject
        message.set_content(body, cte="8bit")  # readable as is: no quoted-printable
        number = len(list(self.folder.glob("*.eml"))) + 1
        safe = "".join(c if c.isalnum() or c in "@.-_" else "_" for c in to)
        (self.folder / f"{number:05d}-{safe}.eml").write_bytes(bytes(message))


@dataclass
class FanOutMailer:
    mailers: tuple[Mailer, ...]

    def send(self, to: str, subject: str, body: str) -> None:
        for mailer in self.mailers:
            mailer.send(to, subject, body)
