"""Identity: agencies, users, roles, tokens, API keys, permission checks and the audit log."""
