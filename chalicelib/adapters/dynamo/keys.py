"""Every PK / SK / GSI key string of the single table is built and parsed here, and only here.

- account:     PK ``ACCT#<id>``, SK ``ACCT``;
  GSI1 (owner -> accounts) ``OWNER#<type>#<owner id>`` / ``CUR#<currency>``
- entry:       PK ``ACCT#<id>``, SK ``E#<created_at>#<seq:012d>``
- transaction: PK ``TXN#<id>``, SK ``TXN``;
  GSI2 (day -> transactions) ``TXDAY#<yyyy-mm-dd>#<shard>`` / ``<created_at>#<id>``

Entries sort by time *and* by ``seq`` (the write path keeps an account's entry times
non-decreasing), so a time filter is a key range and "entries after a checkpoint" is a key range.
The day index is sharded so that one day's writes do not all land on one GSI partition.
"""

from __future__ import annotations

import zlib

ACCOUNT_PREFIX = "ACCT#"
ACCOUNT_SK = "ACCT"
ENTRY_PREFIX = "E#"
TRANSACTION_PREFIX = "TXN#"
TRANSACTION_SK = "TXN"
OWNER_PREFIX = "OWNER#"
CURRENCY_PREFIX = "CUR#"
DAY_PREFIX = "TXDAY#"
DAY_INDEX_SHARDS = 4
SEQ_WIDTH = 12


def account_pk(account_id: str) -> str:
    return ACCOUNT_PREFIX + account_id


def account_id_from_pk(pk: str) -> str:
    if not pk.startswith(ACCOUNT_PREFIX):
        raise ValueError(f"not an account key: {pk!r}")
    return pk[len(ACCOUNT_PREFIX) :]


def entry_sk(created_at: str, seq: int) -> str:
    return f"{ENTRY_PREFIX}{created_at}#{seq:0{SEQ_WIDTH}d}"


def entry_time_bounds(since: str | None, until: str | None) -> tuple[str, str]:
    """Inclusive SK bounds for entries created in [since, until] (either side open)."""
    low = ENTRY_PREFIX + (since or "")
    # "~" sorts after every character used in timestamps and seq numbers.
    high = ENTRY_PREFIX + (until + "#~" if until else "~")
    return low, high


def owner_gsi_pk(owner_type: str, owner_id: str) -> str:
    return f"{OWNER_PREFIX}{owner_type}#{owner_id}"


def owner_gsi_sk(currency: str) -> str:
    return CURRENCY_PREFIX + currency


def transaction_pk(transaction_id: str) -> str:
    return TRANSACTION_PREFIX + transaction_id


def day_index_pk(created_at: str, transaction_id: str) -> str:
    shard = zlib.crc32(transaction_id.encode()) % DAY_INDEX_SHARDS
    return f"{DAY_PREFIX}{created_at[:10]}#{shard}"


def day_index_pks(day: str) -> list[str]:
    """All GSI2 partitions holding the transactions created on ``day`` (YYYY-MM-DD)."""
    return [f"{DAY_PREFIX}{day}#{shard}" for shard in range(DAY_INDEX_SHARDS)]


def day_index_sk(created_at: str, transaction_id: str) -> str:
    return f"{created_at}#{transaction_id}"
