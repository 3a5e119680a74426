"""Partner transfers both ways: accounts, settlement files, reconciliation, credits (docs/partners.md)."""
