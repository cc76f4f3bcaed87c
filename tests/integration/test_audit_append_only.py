"""Audit events are append-only in every write that carries one (``AtomicWrite.append_audit``):
an event whose id is taken fails the action's whole write, so the action is not done and the
earlier event stays as it was. (Ledger writes: tests/integration/test_rollback.py.)"""

from __future__ import annotations

import pytest

from chalicelib.adapters.dynamo.auth_repository import DynamoAuthRepository
from chalicelib.adapters.dynamo.facility_repository import DynamoFacilityRepository
from chalicelib.adapters.dynamo.models import AuditItem
from chalicelib.adapters.dynamo.outbox_repository import DynamoOutbox
from chalicelib.adapters.email import FolderMailer
from chalicelib.auth import passwords
from chalicelib.config import get_settings
from chalicelib.domain.errors import VersionConflict
from chalicelib.domain.users import AuditEvent
from chalicelib.services import facilities
from chalicelib.services.auth import AuthService
from tests.support import scan

EARLIER = AuditEvent(
    id="aud_taken",
    at="2026-11-23T00:00:00.000000Z",
    actor_id="x",
    action="earlier",
    target=None,
    ip=None,
)


@pytest.fixture
def taken_id(table: str, monkeypatch) -> str:
    """The next audit event gets the id of one already stored."""
    AuditItem.from_domain(EARLIER).save()
    monkeypatch.setattr(AuditEvent, "new", classmethod(lambda cls, action, **_: EARLIER))
    return table


def test_a_sign_up_whose_audit_id_is_taken_creates_nothing(taken_id, tmp_path):
    passwords.configure_for_tests()
    service = AuthService(
        DynamoAuthRepository(),
        get_settings(),
        FolderMailer("no-reply@x", tmp_path),
        DynamoOutbox(),
        lambda: 1e9,
    )
    with pytest.raises(VersionConflict):
        service.sign_up("ann@example.com", "correct horse battery", True, None)

    items = scan(taken_id)
    assert [i["item_type"] for i in items] == ["audit"]
    assert items[0]["action"] == "earlier"


def test_a_facility_whose_audit_id_is_taken_is_not_created(taken_id):
    with pytest.raises(VersionConflict):
        facilities.create_facility(
            DynamoFacilityRepository(), "North Clinic", admin_id="usr_admin", ip=None
        )

    items = scan(taken_id)
    assert [i["item_type"] for i in items] == ["audit"]
    assert items[0]["action"] == "earlier"
