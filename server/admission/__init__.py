"""Who may call and with what: API keys and scopes, per-key quotas, fetching images by URL."""
