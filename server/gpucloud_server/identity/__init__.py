"""Identity: users, sessions, API keys, rate limits, usage and their storage."""
