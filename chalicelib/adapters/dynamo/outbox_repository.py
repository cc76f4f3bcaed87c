"""The mail outbox on the table: mails asked for by requests, sent by ``services/mail_outbox``.

A request writes one item (``add``, or ``put_in`` as part of its own transaction); the sender
queries the shards, takes a lease on each item with a conditional update (two senders never
send one mail twice at once), sends, and deletes it. Items expire by TTL after two days, so a
mail that keeps failing does not stay forever. ``count_mail`` is the per-address hourly limit:
one conditional ``ADD`` that refuses at the limit.
"""

from __future__ import annotations

from pynamodb.exceptions import PutError, UpdateError

from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.models import MailCountItem, OutboxItem
from chalicelib.adapters.dynamo.transact import AtomicWrite, condition_failed
from chalicelib.domain.errors import VersionConflict
from chalicelib.domain.users import MailKind, OutboxMail

KEEP_SECONDS = 2 * 24 * 3600


class DynamoOutbox:
    def add(self, mail: OutboxMail, now: int) -> None:
        try:
            self._item(mail, now).save(OutboxItem.PK.does_not_exist())
        except PutError as exc:
            if condition_failed(exc):
                raise VersionConflict("outbox id taken") from exc
            raise

    def put_in(self, write: AtomicWrite, mail: OutboxMail, now: int) -> None:
        """The mail as one more item of a request's own transaction."""
        write.put(self._item(mail, now), OutboxItem.PK.does_not_exist(), VersionConflict("taken"))

    def pending(self, now: int, limit: int = 100) -> list[OutboxMail]:
        """Mails not leased by another sender, oldest first per shard."""
        found: list[OutboxMail] = []
        for shard in range(keys.OUTBOX_SHARDS):
            for item in OutboxItem.query(
                keys.outbox_pk(shard),
                filter_condition=OutboxItem.claimed_until < now,
                consistent_read=True,
                limit=limit,
            ):
                found.append(self._mail(item))
        return found[:limit]

    def lease(self, mail: OutboxMail, now: int, seconds: int) -> bool:
        """Take the mail for ``seconds``; False if another sender has it (or it is gone)."""
        try:
            self._key(mail).update(
                actions=[OutboxItem.claimed_until.set(now + seconds)],
                condition=OutboxItem.PK.exists() & (OutboxItem.claimed_until < now),
            )
        except UpdateError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def done(self, mail: OutboxMail) -> None:
        self._key(mail).delete()

    def failed(self, mail: OutboxMail) -> None:
        """Count a failed attempt and let the mail be taken again."""
        self._key(mail).update(
            actions=[OutboxItem.attempts.add(1), OutboxItem.claimed_until.set(0)],
            condition=OutboxItem.PK.exists(),
        )

    def count_mail(self, kind: MailKind, email: str, hour: str, limit: int, now: int) -> bool:
        """Count one more mail of ``kind`` to ``email`` in ``hour``; False at the limit."""
        item = MailCountItem(keys.mails_pk(kind.value, email, hour), keys.MAILS_SK)
        try:
            item.update(
                actions=[
                    MailCountItem.count.add(1),
                    MailCountItem.item_type.set(MailCountItem.ITEM_TYPE),
                    MailCountItem.expires_at.set(now + 2 * 3600),
                ],
                condition=MailCountItem.count.does_not_exist() | (MailCountItem.count < limit),
            )
        except UpdateError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    @staticmethod
    def _key(mail: OutboxMail) -> OutboxItem:
        shard = keys.outbox_shard(mail.id)
        return OutboxItem(keys.outbox_pk(shard), keys.outbox_sk(mail.created_at, mail.id))

    def _item(self, mail: OutboxMail, now: int) -> OutboxItem:
        item = self._key(mail)
        item.item_type = OutboxItem.ITEM_TYPE
        item.message_id = mail.id
        item.kind = mail.kind.value
        item.email = mail.email
        item.user_id = mail.user_id
        item.ip = mail.ip
        item.user_agent = mail.user_agent
        item.created_at = mail.created_at
        item.attempts = mail.attempts
        item.claimed_until = 0
        item.expires_at = now + KEEP_SECONDS
        return item

    @staticmethod
    def _mail(item: OutboxItem) -> OutboxMail:
        return OutboxMail(
            id=item.message_id,
            kind=MailKind(item.kind),
            created_at=item.created_at,
            email=item.email,
            user_id=item.user_id,
            ip=item.ip,
            attempts=int(item.attempts or 0),
            user_agent=item.user_agent,
        )
