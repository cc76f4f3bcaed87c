"""Pure ledger domain: money, accounts, postings, transactions and their rules. No I/O."""
