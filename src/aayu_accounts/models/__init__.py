"""Every ORM table, one module per table; importing this package registers them all."""

from aayu_accounts.models.base import Base
from aayu_accounts.models.job import Job
from aayu_accounts.models.leader_lease import LeaderLease

__all__ = ["Base", "Job", "LeaderLease"]
