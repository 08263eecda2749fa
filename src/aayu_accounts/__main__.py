"""`python -m aayu_accounts` runs the same CLI as the `aayu-accounts` script."""

from aayu_accounts.cli import main

main()
