"""The v2.5 path, as it works today: a credential list and a document store on disk.

It must keep working untouched while the new path is rolled out: it is where a rollback
sends everyone.
"""
