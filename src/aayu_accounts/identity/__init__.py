"""Identity: users, clinics, memberships, sign-in and its hardening primitives."""
