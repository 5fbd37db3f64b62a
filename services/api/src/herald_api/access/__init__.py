"""Who a request acts for and what it may spend: API keys, rate limits, and the dependencies
that hand a route its principal only after spending its budget."""
