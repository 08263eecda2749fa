"""Operations pages (platform administrators with MFA): flags, rollback, incidents, charts."""
